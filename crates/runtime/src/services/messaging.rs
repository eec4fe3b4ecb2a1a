//! Messages a function publishes to its tenant's subjects (`meshwa:platform/messaging`), granted
//! per subject pattern (`grants.publish`), on the server's [`MessageBus`] (a cluster's NATS).
//!
//! Subjects are the tenant's own: a function of tenant `acme` publishing `orders.created` puts a
//! message on `acme.orders.created` of the bus, and only functions of `acme` can subscribe to it
//! (the bus implementation adds its own prefix). A subject is checked against the function's
//! grants at each call: an ungranted subject, a subject with wildcards, a bad header or a body
//! over [`MAX_MESSAGE`] is an error value, not a trap. A component that imports the interface
//! without any `grants.publish` is refused at load, like every service; a function granted
//! `publish` on a server without a bus is refused at load too (`LoadError::NoMessageBus`).
//! Delivery is at most once: a message published while no node subscribes is dropped, as NATS
//! does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use meshwa_manifest::{Name, Subject};

use crate::state::InstanceState;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "meshwa:platform/publisher",
        imports: { default: async | trappable },
        require_store_data_send: true,
    });
}

use bindings::meshwa::platform::messaging;

/// Largest message body a function may publish (NATS's default payload limit, less room for
/// headers).
pub const MAX_MESSAGE: usize = 1_000_000;

/// Where published messages go: the cluster's NATS (in `meshwa-cluster`).
pub trait MessageBus: Send + Sync + 'static {
    /// Publishes `body` on `subject`, which is `<tenant>.<the function's subject>`.
    fn publish(
        &self,
        subject: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

/// What a function's instances need to publish, resolved at load.
pub(crate) struct PublishGrant {
    pub(crate) bus: Arc<dyn MessageBus>,
    pub(crate) tenant: Name,
    pub(crate) subjects: Vec<Subject>,
}

/// The grant of `spec`, if it has one: `Err` names the missing bus.
pub(crate) fn resolve(
    resolving: &super::Resolving<'_>,
    bus: Option<&Arc<dyn MessageBus>>,
) -> Result<Option<PublishGrant>, crate::LoadError> {
    let subjects = &resolving.spec.grants.publish;
    if subjects.is_empty() {
        return Ok(None);
    }
    let bus = bus.ok_or_else(|| crate::LoadError::NoMessageBus {
        function: resolving.id.to_string(),
        key: "grants.publish",
    })?;
    Ok(Some(PublishGrant {
        bus: bus.clone(),
        tenant: resolving.manifest.tenant.clone(),
        subjects: subjects.clone(),
    }))
}

impl messaging::Host for InstanceState {
    async fn publish(
        &mut self,
        subject: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let Some(grant) = &self.services().publish else {
            // Refused at load: a component importing this needs a grant.
            wasmtime::bail!("messaging without a publish grant");
        };
        let subject = match Subject::new(&subject, false) {
            Ok(subject) => subject,
            Err(why) => return Ok(Err(why)),
        };
        if !grant.subjects.iter().any(|p| p.matches(subject.as_str())) {
            return Ok(Err(format!(
                "publishing to {subject} is not granted (grants.publish)"
            )));
        }
        if body.len() > MAX_MESSAGE {
            return Ok(Err(format!(
                "a message body is at most {MAX_MESSAGE} bytes, not {}",
                body.len()
            )));
        }
        for (name, value) in &headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Ok(Err(format!("invalid header {name:?}")));
            }
            // `nats-*` headers are instructions to NATS, `meshwa-*` ones the host's to set.
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("nats-") || lower.starts_with("meshwa-") {
                return Ok(Err(format!("header {name:?} is reserved")));
            }
        }
        let bus = grant.bus.clone();
        let full = format!("{}.{subject}", grant.tenant);
        let published = bus.publish(full, headers, Bytes::from(body)).await;
        if let Err(error) = &published {
            tracing::error!(function = %self.services().id, %error, "publishing a message failed");
        }
        Ok(published.map_err(|_| "the message bus failed; nothing was published".to_owned()))
    }
}

/// `meshwa:platform/messaging`: granted with `grants.publish`.
pub(crate) const SERVICE: super::HostService = super::HostService {
    prefix: "meshwa:platform/messaging",
    grant: "publish = [\"<subject>\"]",
    spin_grant: None,
    granted: |grants| !grants.publish.is_empty(),
    add_to_linker: |linker| {
        messaging::add_to_linker::<_, wasmtime::component::HasSelf<InstanceState>>(linker, |s| s)
    },
};
