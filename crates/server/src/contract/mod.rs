//! The API's contract: every request body, query, answer and error code, as the types the
//! server serialises, the CLI deserialises and the OpenAPI document describes, so the three
//! cannot drift apart.

mod error;
mod insights;
mod people;
mod records;
mod tasks;
mod templates;
mod webhooks;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use insights::{
    ChartBar, CostOutcomes, EndReasonCount, InsightsQuery, InsightsView, PullRequestOutcomes,
    RunOutcomes, TemplateOutcomeView, TimeSaved,
};
pub use people::{
    CreateProject, CreateToken, CreateUser, GroupBinding, GroupList, Me, MemberList, MemberSet,
    MemberView, ProjectDetail, ProjectList, ProjectRole, ProjectUpdated, ProjectView, SetRole,
    SettingsView, SignIn, SignedIn, TokenCreated, TokenList, TokenView, UpdateProject, UserCreated,
    UserList, UserView,
};
pub use records::{
    AuditEventView, AuditPage, AuditQuery, CredentialList, CredentialView, Health, MarkedRead,
    MonthUsage, NotificationList, NotificationQuery, NotificationView, UsageQuery,
};
pub use tasks::{
    AddressReview, CancelOutcome, Cancelled, CreateTask, EventsPage, EventsQuery, FollowQuery,
    PullRequestView, RunList, RunListEntry, RunView, RunsQuery, TaskFields, TaskList,
    TaskListEntry, TaskListQuery, TaskView,
};
pub use templates::{
    FromTask, Instantiate, TemplateDetail, TemplateList, TemplateListEntry, TemplateQuery,
    TemplateUseView, TemplateVersionView, TemplateView,
};
pub use webhooks::{WebhookAccepted, WebhookPayload};
