//! The two native deployments: the monolith, and one process per service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tax_logic::{Service, ServiceError, gateway};

use crate::http::{self, Body, HttpClient};
use crate::store::Store;

/// What a process of a deployment does.
pub enum Role {
    /// `POST /checkout`: the whole checkout as function calls.
    Monolith(Store),
    /// `POST /`: one service, JSON in and out.
    Service(Service, Store),
    /// `POST /checkout`: the checkout as calls to the services over HTTP.
    Gateway(Downstream),
}

impl Role {
    fn path(&self) -> &'static str {
        match self {
            Role::Monolith(_) | Role::Gateway(_) => "/checkout",
            Role::Service(..) => "/",
        }
    }
}

pub async fn serve(listen: SocketAddr, role: Role) -> anyhow::Result<()> {
    let role = Arc::new(role);
    http::serve(listen, move |req| handle(Arc::clone(&role), req)).await
}

async fn handle(role: Arc<Role>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() == Method::GET && path == "/health" {
        return http::plain(StatusCode::OK, "ok\n");
    }
    if path != role.path() {
        return http::plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::POST {
        return http::plain(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let body = match http::read_body(req).await {
        Ok(body) => body,
        Err(e) => return http::error(&e),
    };
    let result = match role.as_ref() {
        Role::Monolith(store) => store
            .run(move |kv| tax_logic::checkout_monolith_json(&body, kv))
            .await
            .map(http::html),
        Role::Service(service, store) => {
            let service = *service;
            store
                .run(move |kv| service.handle_json(&body, kv))
                .await
                .map(http::json)
        }
        Role::Gateway(downstream) => downstream.checkout(&body).await.map(http::html),
    };
    result.unwrap_or_else(|e| http::error(&e))
}

/// The gateway's view of the other services: where they listen, and one pooled keep-alive
/// client to reach them.
pub struct Downstream {
    client: HttpClient,
    urls: HashMap<Service, Uri>,
}

impl Downstream {
    /// From `NAME=URL` pairs, one for each service.
    pub fn new(pairs: &[String]) -> anyhow::Result<Self> {
        let mut urls = HashMap::new();
        for pair in pairs {
            let (name, url) = pair
                .split_once('=')
                .with_context(|| format!("--next {pair}: NAME=URL expected"))?;
            let service = Service::from_name(name)
                .with_context(|| format!("--next {pair}: no service {name}"))?;
            let url: Uri = url
                .parse()
                .with_context(|| format!("--next {pair}: bad URL"))?;
            urls.insert(service, url);
        }
        let missing: Vec<_> = Service::ALL
            .iter()
            .filter(|s| !urls.contains_key(s))
            .map(|s| s.name())
            .collect();
        if !missing.is_empty() {
            bail!("the gateway needs --next for {}", missing.join(", "));
        }
        Ok(Self {
            client: http::client(),
            urls,
        })
    }

    /// The orchestration of [`tax_logic::checkout_monolith`], each call a round trip.
    async fn checkout(&self, body: &[u8]) -> Result<String, ServiceError> {
        let req = gateway::decode_checkout(body)?;
        gateway::validate(&req)?;
        let auth = self
            .call(Service::Auth, &gateway::auth_request(&req))
            .await?;
        let cart = self
            .call(Service::Cart, &gateway::cart_request(&req, &auth))
            .await?;
        // Pricing and inventory need only the cart: both at once. Both are awaited, and
        // pricing's error wins, as in the monolith, which calls pricing first.
        let pricing_request = gateway::pricing_request(&req, &auth, &cart);
        let inventory_request = gateway::inventory_request(&req, &cart);
        let (pricing, inventory) = tokio::join!(
            self.call(Service::Pricing, &pricing_request),
            self.call(Service::Inventory, &inventory_request),
        );
        let (pricing, inventory) = (pricing?, inventory?);
        let page = self
            .call(
                Service::Render,
                &gateway::render_request(&req, &auth, &cart, &pricing, &inventory),
            )
            .await?;
        Ok(gateway::checkout_html(page))
    }

    /// POSTs `input` as JSON to `service`; its error, if any, is passed on as it is.
    async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        service: Service,
        input: &I,
    ) -> Result<O, ServiceError> {
        let name = service.name();
        let body = serde_json::to_vec(input)
            .map_err(|e| ServiceError::internal(format!("{name} request: {e}")))?;
        let request = Request::post(self.urls[&service].clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ServiceError::internal(format!("{name} request: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ServiceError::unavailable(format!("{name} unreachable: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ServiceError::unavailable(format!("{name} response: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(ServiceError::from_json(&body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ServiceError::internal(format!("{name} answered malformed JSON: {e}")))
    }
}
