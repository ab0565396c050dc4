//! [`ApiError`]: every error the HTTP API answers with, as Druid's error body
//! (`error`, `errorMessage`, `errorClass`, `host`) and the status Druid uses: user input that does
//! not parse or fit is a 400, an unknown task a 404, a full queue a 429, a query timeout a 504,
//! a metadata group that cannot commit or read in time a 503; only other failures that are
//! not the caller's fault are 500s.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use grove_query::QueryError;
use grove_raft::metadata::MetadataError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Druid's `error` (a short code).
    pub error: &'static str,
    pub message: String,
    pub class: &'static str,
    /// Filled in by the handler that knows the server's address.
    pub host: Option<String>,
    /// A query error keeps its own body (see [`QueryError::to_druid_json`]).
    query: Option<QueryError>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, class: &'static str, message: String) -> Self {
        ApiError {
            status,
            error,
            message,
            class,
            host: None,
            query: None,
        }
    }

    /// A request body that is not the JSON the endpoint expects.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Malformed request",
            "com.fasterxml.jackson.databind.JsonMappingException",
            message.into(),
        )
    }

    /// A well-formed request that asks for something invalid (a bad ingestion spec, an unknown
    /// result format).
    pub fn invalid_input(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid input",
            "org.apache.druid.error.DruidException",
            message.into(),
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "org.apache.druid.error.DruidException",
            message.into(),
        )
    }

    /// A request body over the server's limit; the message names it.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "org.apache.druid.error.DruidException",
            message.into(),
        )
    }

    /// A bounded queue or pool is full; the message names the limit.
    pub fn capacity(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Query capacity exceeded",
            "org.apache.druid.query.QueryCapacityExceededException",
            message.into(),
        )
    }

    /// The metadata group could not commit or confirm in time; retrying later may succeed.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "org.apache.druid.server.initialization.jetty.ServiceUnavailableException",
            message.into(),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unknown exception",
            "org.apache.druid.java.util.common.ISE",
            message.into(),
        )
    }

    pub fn with_host(mut self, host: &str) -> ApiError {
        self.host = Some(host.to_owned());
        self
    }

    pub fn body(&self) -> serde_json::Value {
        match &self.query {
            Some(query) => query.to_druid_json(self.host.as_deref()),
            None => serde_json::json!({
                "error": self.error,
                "errorMessage": self.message,
                "errorClass": self.class,
                "host": self.host,
            }),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            error: e.error_code(),
            message: e.message.clone(),
            class: e.error_class(),
            host: None,
            query: Some(e),
        }
    }
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> ApiError {
        match e {
            MetadataError::UnknownTask(_) | MetadataError::UnknownSegment(_) => {
                ApiError::not_found(e.to_string())
            }
            MetadataError::TaskExists(_)
            | MetadataError::Refused(_)
            | MetadataError::StaleTerm { .. }
            | MetadataError::RequestIdReused { .. }
            | MetadataError::CommandTooLarge { .. } => ApiError::invalid_input(e.to_string()),
            MetadataError::Storage(_) => ApiError::internal(e.to_string()),
            MetadataError::Unavailable(_) | MetadataError::OutcomeUnknown(_) => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_metadata_group_is_a_druid_shaped_503() {
        let error = ApiError::from(MetadataError::Unavailable(
            "metadata group: no leader reachable within 5000 ms".into(),
        ))
        .with_host("localhost:8888");
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        let body = error.body();
        assert_eq!(body["error"], "Service unavailable");
        assert_eq!(body["host"], "localhost:8888");
        assert!(
            body["errorMessage"]
                .as_str()
                .unwrap()
                .starts_with("metadata unavailable: metadata group: no leader reachable"),
            "{body}"
        );
        assert!(body["errorClass"].as_str().unwrap().contains("Unavailable"));
    }
}
