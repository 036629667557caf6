//! JetStream streams: the `StreamActor` (ensure configured streams at every connection,
//! CRUD for the REST API), the mapping between our stream specs and the server's config,
//! the shared [`StreamsState`] (health, subject catalog), and the configured durable
//! consumers ensured after the streams ([`consumers`]).

pub mod ack;
pub mod actor;
pub mod consumers;
pub mod mapping;
pub mod room;
pub mod state;

use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind, RequestError,
    RequestErrorKind,
};
use async_nats::jetstream::ErrorCode;

pub use ack::AckFailure;
pub use actor::{
    CreateStream, Created, DeleteStream, GetStream, StoreWatch, StreamActor, UpdateStream,
};
pub use consumers::ConsumersState;
pub use state::StreamsState;

/// Why a stream operation failed, in the categories the API maps to status codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    NotFound(String),
    /// Exists with another config, or subjects overlap another stream.
    #[error("{0}")]
    Conflict(String),
    /// Defined in the config file, so not changeable through the API.
    #[error("{0}")]
    Protected(String),
    #[error("{0}")]
    Invalid(String),
    /// No connection, or the server did not answer in time.
    #[error("jetstream unavailable: {0}")]
    Unavailable(String),
    #[error("jetstream error: {0}")]
    JetStream(String),
}

impl StreamError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StreamError::NotFound(_))
    }

    fn from_api(e: &async_nats::jetstream::Error) -> StreamError {
        let text = e.to_string();
        match e.error_code() {
            ErrorCode::STREAM_NOT_FOUND => StreamError::NotFound(text),
            ErrorCode::STREAM_NAME_EXIST | ErrorCode::STREAM_SUBJECT_OVERLAP => {
                StreamError::Conflict(text)
            }
            ErrorCode::STREAM_INVALID_CONFIG | ErrorCode::STREAM_UPDATE => {
                StreamError::Invalid(text)
            }
            ErrorCode::JETSTREAM_NOT_ENABLED => StreamError::Unavailable(text),
            _ => StreamError::JetStream(text),
        }
    }

    pub fn from_get(e: &GetStreamError) -> StreamError {
        match e.kind() {
            GetStreamErrorKind::JetStream(api) => StreamError::from_api(&api),
            GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                StreamError::Invalid(e.to_string())
            }
            GetStreamErrorKind::Request => StreamError::Unavailable(e.to_string()),
        }
    }

    pub fn from_create(e: &CreateStreamError) -> StreamError {
        match e.kind() {
            CreateStreamErrorKind::JetStream(api) => StreamError::from_api(&api),
            CreateStreamErrorKind::EmptyStreamName | CreateStreamErrorKind::InvalidStreamName => {
                StreamError::Invalid(e.to_string())
            }
            CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                StreamError::Unavailable(e.to_string())
            }
            CreateStreamErrorKind::NotFound => StreamError::NotFound(e.to_string()),
            _ => StreamError::JetStream(e.to_string()),
        }
    }

    pub fn request(e: &RequestError) -> StreamError {
        match e.kind() {
            RequestErrorKind::NoResponders | RequestErrorKind::TimedOut => {
                StreamError::Unavailable(e.to_string())
            }
            _ => {
                let text = e.to_string();
                if text.contains("stream not found") {
                    StreamError::NotFound(text)
                } else {
                    StreamError::JetStream(text)
                }
            }
        }
    }
}
