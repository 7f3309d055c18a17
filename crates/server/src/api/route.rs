//! One route of the API as the route table declares it: its path, who may call it, the audit
//! action it records, and the contract types of its request and answer.

use std::borrow::Cow;
use std::fmt;

use axum::http::{Method, StatusCode};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Access;

/// A named schema in the OpenAPI document: a contract type's own schema, and those of the types
/// it refers to.
#[derive(Clone, Copy)]
pub struct Schema {
    pub name: fn() -> Cow<'static, str>,
    pub schema: fn() -> RefOr<utoipa::openapi::schema::Schema>,
    pub parts: fn(&mut Vec<(String, RefOr<utoipa::openapi::schema::Schema>)>),
}

impl Schema {
    pub fn of<T: ToSchema>() -> Schema {
        Schema {
            name: T::name,
            schema: T::schema,
            parts: T::schemas,
        }
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.name)())
    }
}

/// What a successful call answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A JSON body of this type, with one of these statuses (the usual one first).
    Json {
        statuses: Vec<StatusCode>,
        schema: Schema,
    },
    /// `204 No Content`.
    Empty,
    /// A stream of server-sent events.
    Stream,
    /// Text of this content type.
    Text(&'static str),
}

/// One route of the API.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    /// The path under `/api/v1`, with `{parameters}`.
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// The audit action a successful call records; every route that changes something has one.
    pub action: Option<&'static str>,
    /// A valid request body, for the OpenAPI document and the tests.
    pub example: Option<&'static str>,
    /// The type of the request body.
    pub body: Option<Schema>,
    /// The body may be left out.
    pub body_optional: bool,
    /// The query parameters, from the type they are read into.
    pub query: Option<fn() -> Vec<Parameter>>,
    /// What a success answers; every route declares it.
    pub answer: Option<Answer>,
}

fn query_of<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

impl RouteSpec {
    fn new(method: Method, path: &'static str, access: Access, summary: &'static str) -> RouteSpec {
        RouteSpec {
            method,
            path,
            access,
            summary,
            action: None,
            example: None,
            body: None,
            body_optional: false,
            query: None,
            answer: None,
        }
    }

    /// The request body is a `T`.
    pub(super) fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(Schema::of::<T>());
        self
    }

    /// The request body, when sent, is a `T`; it may be left out.
    pub(super) fn optional_body<T: ToSchema>(mut self) -> Self {
        self.body_optional = true;
        self.body::<T>()
    }

    /// The query string is read into a `T`.
    pub(super) fn query<T: IntoParams>(mut self) -> Self {
        self.query = Some(query_of::<T>);
        self
    }

    /// Answers `200 OK` with a `T`.
    pub(super) fn answers<T: ToSchema>(self) -> Self {
        self.answers_with::<T>(StatusCode::OK)
    }

    /// Answers `201 Created` with a `T`.
    pub(super) fn creates<T: ToSchema>(self) -> Self {
        self.answers_with::<T>(StatusCode::CREATED)
    }

    /// Answers `202 Accepted` with a `T`: taken, the work follows.
    pub(super) fn accepts<T: ToSchema>(self) -> Self {
        self.answers_with::<T>(StatusCode::ACCEPTED)
    }

    /// A valid request body, for a route that records no audit action.
    pub(super) fn example(mut self, example: &'static str) -> Self {
        self.example = Some(example);
        self
    }

    fn answers_with<T: ToSchema>(mut self, status: StatusCode) -> Self {
        self.answer = Some(Answer::Json {
            statuses: vec![status],
            schema: Schema::of::<T>(),
        });
        self
    }

    /// May also answer with `status` and the same body (202 for work that finishes later).
    pub(super) fn or_status(mut self, status: StatusCode) -> Self {
        if let Some(Answer::Json { statuses, .. }) = &mut self.answer {
            statuses.push(status);
        }
        self
    }

    /// Answers `204 No Content`.
    pub(super) fn empty(mut self) -> Self {
        self.answer = Some(Answer::Empty);
        self
    }

    /// Answers `200 OK` with text of `content_type`.
    pub(super) fn text(mut self, content_type: &'static str) -> Self {
        self.answer = Some(Answer::Text(content_type));
        self
    }

    /// Answers with server-sent events.
    pub(super) fn streams(mut self) -> Self {
        self.answer = Some(Answer::Stream);
        self
    }
}

/// A route that changes nothing.
pub(super) fn spec(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec::new(method, path, access, summary)
}

/// A route that changes something: it records `action` in the audit trail.
pub(super) fn change(
    method: Method,
    path: &'static str,
    access: Access,
    action: &'static str,
    summary: &'static str,
    example: Option<&'static str>,
) -> RouteSpec {
    RouteSpec {
        action: Some(action),
        example,
        ..RouteSpec::new(method, path, access, summary)
    }
}
