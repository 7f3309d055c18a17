//! The live stream of a run: history first, then new events as they are stored, then `end`.
//! Every stream of a run on this node shares one reader of the store (`Store::follow`), woken by
//! appends on any node through `LISTEN/NOTIFY` on PostgreSQL: measured in docs/benchmarks.md
//! ("Live streams"), 1,000 streams each polling the store cost more and answered later.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use nightshift_store::Followed;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::AppState;
use crate::contract::{FollowQuery, RunView};
use crate::error::ApiError;

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
    let after = query.after.or(resume).unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let mut follower = state.store.follow(run_id, after);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = follower.next_or_end(500) => next,
                _ = tx.closed() => return,
            };
            match next {
                Ok(Followed::Events(batch)) => {
                    for event in &batch {
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
                }
                Ok(Followed::Ended(run)) => {
                    let view = RunView::new(&run);
                    if let Ok(end) = Event::default().event("end").json_data(&view) {
                        let _ = tx.send(Ok(end)).await;
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}
