//! The live stream of a run: history first, then new events as they are stored, then `end`.
//! Followers wake on appends in this process and poll otherwise, so any API node can serve.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize)]
pub struct FollowQuery {
    #[serde(default)]
    pub after: Option<i64>,
}

pub async fn follow(
    State(state): State<AppState>,
    Path((project, id, number)): Path<(String, i64, i64)>,
    Query(query): Query<FollowQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let run_id = state.run_id(&project, id, number).await?;
    // A reconnecting browser says where it stopped.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let mut after = query.after.or(resume).unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let store = state.store.clone();
    tokio::spawn(async move {
        let mut wake = store.subscribe();
        loop {
            let run = match store.run(run_id).await {
                Ok(Some(run)) => run,
                _ => return,
            };
            let batch = match store.events(run_id, after, 500).await {
                Ok(batch) => batch,
                Err(_) => return,
            };
            let full = batch.len() == 500;
            for event in &batch {
                after = event.seq;
                let Ok(sse) = Event::default()
                    .id(event.seq.to_string())
                    .event("run_event")
                    .json_data(event)
                else {
                    continue;
                };
                if tx.send(Ok(sse)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            // The engine stores every event before it marks the run ended, so an ended run with
            // nothing new has nothing more to say.
            if batch.is_empty() && run.status.is_terminal() {
                let view = crate::views::RunView::new(&run);
                if let Ok(end) = Event::default().event("end").json_data(&view) {
                    let _ = tx.send(Ok(end)).await;
                }
                return;
            }
            tokio::select! {
                _ = async {
                    loop {
                        match wake.recv().await {
                            Ok(id) if id == run_id => break,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                        }
                    }
                } => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}
