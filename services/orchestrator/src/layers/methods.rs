//! Every method the server answers, what it needs of its caller and whether it streams: the one table
//! the authentication and timeout layers read.

use atelier_proto::v1::account_service_server::SERVICE_NAME as ACCOUNTS;
use atelier_proto::v1::job_service_server::SERVICE_NAME as JOBS;
use atelier_proto::v1::studio_service_server::SERVICE_NAME as STUDIO;
use tonic_health::pb::health_server::SERVICE_NAME as HEALTH;
use tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME as REFLECTION_V1;
use tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME as REFLECTION_V1ALPHA;

use crate::auth::ADMIN_IS_NO_TENANT;

/// What the admin token is told by the webhook calls.
const WEBHOOKS_BELONG_TO_A_TENANT: &str =
    "webhook endpoints belong to a tenant: call with the tenant's API key";

/// What a method needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health and reflection.
    Public,
    /// A tenant's API key; the admin token is refused (1002) with this sentence.
    Tenant { admin_refused: &'static str },
    /// The admin token; tenants are refused (1002).
    Admin,
    /// The admin token or a tenant's key; which account the call is about the handler decides from
    /// the request.
    AdminOrTenant,
    /// A tenant's key and the service token in `x-api-key`: workers of the operator reporting tasks.
    Worker,
}

/// One method of the server.
#[derive(Clone, Copy, Debug)]
pub struct Method {
    /// The gRPC service's full name, `atelier.v1.JobService`.
    pub service: &'static str,
    /// The method's name, `SubmitJob`.
    pub name: &'static str,
    pub access: Access,
    /// Whether requests or answers stream; streams are not cut by the request timeout.
    pub streaming: bool,
}

const TENANT: Access = Access::Tenant {
    admin_refused: ADMIN_IS_NO_TENANT,
};
const WEBHOOK_OWNER: Access = Access::Tenant {
    admin_refused: WEBHOOKS_BELONG_TO_A_TENANT,
};

const fn unary(service: &'static str, name: &'static str, access: Access) -> Method {
    Method {
        service,
        name,
        access,
        streaming: false,
    }
}

const fn stream(service: &'static str, name: &'static str, access: Access) -> Method {
    Method {
        service,
        name,
        access,
        streaming: true,
    }
}

/// The table.
pub const METHODS: &[Method] = &[
    unary(JOBS, "SubmitJob", TENANT),
    unary(JOBS, "GetJob", TENANT),
    unary(JOBS, "ListJobs", TENANT),
    unary(JOBS, "CancelJob", TENANT),
    stream(JOBS, "WatchJob", TENANT),
    stream(JOBS, "WatchEvents", TENANT),
    unary(JOBS, "ListJobLogs", TENANT),
    stream(JOBS, "UploadSource", TENANT),
    unary(JOBS, "ListModels", TENANT),
    unary(JOBS, "GetStats", TENANT),
    unary(JOBS, "DeleteJob", TENANT),
    unary(JOBS, "DeleteUpload", TENANT),
    unary(JOBS, "SubmitBatch", TENANT),
    unary(JOBS, "ReportTask", Access::Worker),
    unary(ACCOUNTS, "GetAccount", Access::AdminOrTenant),
    unary(ACCOUNTS, "ListLedger", Access::AdminOrTenant),
    unary(ACCOUNTS, "CreateTenant", Access::Admin),
    unary(ACCOUNTS, "CreateApiKey", Access::Admin),
    unary(ACCOUNTS, "RevokeApiKey", Access::Admin),
    unary(ACCOUNTS, "UpsertAccount", Access::Admin),
    unary(ACCOUNTS, "GrantQuota", Access::Admin),
    unary(ACCOUNTS, "SetMembership", Access::Admin),
    unary(ACCOUNTS, "SetRetention", Access::Admin),
    unary(ACCOUNTS, "CreateWebhookEndpoint", WEBHOOK_OWNER),
    unary(ACCOUNTS, "ListWebhookEndpoints", WEBHOOK_OWNER),
    unary(ACCOUNTS, "DeleteWebhookEndpoint", WEBHOOK_OWNER),
    unary(ACCOUNTS, "ListWebhookDeliveries", WEBHOOK_OWNER),
    unary(STUDIO, "CreateWorkspace", TENANT),
    unary(STUDIO, "GetWorkspace", TENANT),
    unary(STUDIO, "ListWorkspaces", TENANT),
    unary(STUDIO, "AddPairs", TENANT),
    unary(STUDIO, "ListPairs", TENANT),
    unary(STUDIO, "ReviewPairs", TENANT),
    unary(STUDIO, "ArchiveWorkspace", TENANT),
    unary(STUDIO, "ActivateWorkspace", TENANT),
    unary(STUDIO, "DeleteFiles", TENANT),
    unary(STUDIO, "ListPromptGroups", TENANT),
    unary(STUDIO, "GetPromptGroup", TENANT),
    unary(STUDIO, "SavePromptGroup", TENANT),
    unary(STUDIO, "SetActivePromptGroup", TENANT),
    unary(STUDIO, "GetPreferences", TENANT),
    unary(STUDIO, "SetPreferences", TENANT),
    unary(STUDIO, "SubmitStudioJob", TENANT),
    unary(STUDIO, "GetStudioJob", TENANT),
    unary(HEALTH, "Check", Access::Public),
    stream(HEALTH, "Watch", Access::Public),
    stream(REFLECTION_V1, "ServerReflectionInfo", Access::Public),
    stream(REFLECTION_V1ALPHA, "ServerReflectionInfo", Access::Public),
];

/// The method a request's path (`/atelier.v1.JobService/SubmitJob`) names, if the server has it.
/// Paths it does not have reach the router, which answers UNIMPLEMENTED.
pub fn method(path: &str) -> Option<&'static Method> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    METHODS
        .iter()
        .find(|m| m.service == service && m.name == name)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// The table and the API's descriptors name the same methods, streaming alike: a method added to
    /// a proto file without a row here fails this test (and its calls reach no handler with a caller).
    #[test]
    fn the_table_covers_every_method_of_the_api_exactly() {
        let set = prost_types::FileDescriptorSet::decode(atelier_proto::API_FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut described = Vec::new();
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if ![JOBS, ACCOUNTS, STUDIO].contains(&full.as_str()) {
                    continue;
                }
                for m in &service.method {
                    let path = format!("/{full}/{}", m.name());
                    let row = method(&path).unwrap_or_else(|| panic!("{path} has no row"));
                    assert_eq!(
                        row.streaming,
                        m.client_streaming() || m.server_streaming(),
                        "{path} streams"
                    );
                    described.push(path);
                }
            }
        }
        let ours = METHODS
            .iter()
            .filter(|m| [JOBS, ACCOUNTS, STUDIO].contains(&m.service))
            .count();
        assert_eq!(described.len(), ours, "rows without a described method");
        assert!(described.len() >= 40, "the descriptors were read");
    }

    #[test]
    fn paths_resolve_to_their_rows() {
        let submit = method("/atelier.v1.JobService/SubmitJob").expect("row");
        assert_eq!(submit.access, TENANT);
        assert!(!submit.streaming);
        assert_eq!(
            method("/atelier.v1.AccountService/CreateTenant").map(|m| m.access),
            Some(Access::Admin)
        );
        assert_eq!(
            method("/grpc.health.v1.Health/Check").map(|m| m.access),
            Some(Access::Public)
        );
        assert!(method("/atelier.v1.JobService/Nothing").is_none());
        assert!(method("atelier.v1.JobService/SubmitJob").is_none());
        assert!(method("/").is_none());
    }
}
