//! Where an outbound request may connect: the address check and the connection itself.
//!
//! A grant names an origin (`outbound.rs`), but a name can resolve anywhere: to loopback (the
//! admin listener), to a private network, to the link-local metadata address of a cloud VM. So
//! the address each connection is made to is checked too: loopback, private, link-local,
//! unspecified, multicast and the like are refused unless the operator's policy names the
//! address for the function's tenant (`private-outbound`), and so are the server's own
//! listeners, always unless named. The check and the connection use the same resolved address,
//! so a name that resolves differently between the two (DNS rebinding) gains nothing.
//!
//! Why by hand: wasmtime-wasi-http's `default_send_request` connects to the URL's authority by
//! name, with no hook between resolving and connecting. The rest (TLS with the webpki roots,
//! an HTTP/1.1 handshake, the request options' timeouts) follows what it does.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use meshwa_manifest::Policy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions};

/// The runtime-wide facts outbound connections are checked against.
#[derive(Default)]
pub struct Egress {
    policy: RwLock<Arc<Policy>>,
    own_listeners: RwLock<Vec<SocketAddr>>,
}

impl Egress {
    pub(crate) fn set_policy(&self, policy: Arc<Policy>) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    pub(crate) fn set_own_listeners(&self, listeners: Vec<SocketAddr>) {
        *self
            .own_listeners
            .write()
            .unwrap_or_else(|e| e.into_inner()) = listeners;
    }

    /// Why `tenant`'s function may not connect to `address`, if it may not.
    pub(crate) fn refusal(&self, tenant: &str, https: bool, address: SocketAddr) -> Option<String> {
        let address = canonical(address);
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let named = policy
            .tenant(tenant)
            .private_outbound
            .iter()
            .any(|rule| rule.allows_address(https, address));
        if named {
            return None;
        }
        let own = self
            .own_listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|listener| is_listener(*listener, address));
        if own {
            return Some(format!("{address} is one of this server's own listeners"));
        }
        special_range(address.ip()).map(|range| format!("{address} is a {range} address"))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are checked as the IPv4 address they are.
fn canonical(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), address.port()),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

/// Does a connection to `address` reach `listener` (bound to it, or to every address)?
fn is_listener(listener: SocketAddr, address: SocketAddr) -> bool {
    listener.port() == address.port()
        && (listener.ip() == address.ip()
            || (listener.ip().is_unspecified() && special_range(address.ip()).is_some()))
}

/// The kind of non-public range `ip` is in, if any. A connection to a listener bound to every
/// address through a public address of this host is not detected here; such a listener is
/// reachable from anywhere anyway.
fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast or reserved")
            } else {
                None
            }
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Resolves `host`, and connects to the first address `tenant` may reach; refused with
/// `destination-IP-prohibited` if it may reach none of them.
async fn connect(
    egress: &Egress,
    tenant: &str,
    https: bool,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, Error> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Err(_) => return Err(Error::DnsTimeout),
            Ok(Err(error)) => {
                return Err(Error::DnsError {
                    rcode: Some(error.to_string()),
                    info_code: None,
                });
            }
            Ok(Ok(found)) => found.collect(),
        };
    let mut refused = None;
    let mut last_error = None;
    for address in addresses {
        if let Some(why) = egress.refusal(tenant, https, address) {
            refused.get_or_insert(why);
            continue;
        }
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last_error = Some(Error::Connect(error)),
            Err(_) => last_error = Some(Error::ConnectionTimeout),
        }
    }
    if let Some(error) = last_error {
        return Err(error);
    }
    match refused {
        Some(why) => {
            tracing::info!(%tenant, host, port, reason = %why, "outbound connection refused: not named in the policy's private-outbound");
            Err(Error::DestinationIpProhibited)
        }
        None => Err(Error::DestinationNotFound),
    }
}

/// The response body with the between-bytes timeout of the request options.
struct TimedBody {
    incoming: hyper::body::Incoming,
    idle: tokio::time::Interval,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.idle.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) if error.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Error::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

type Connection = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// A task that stops when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `request` (already granted) over a connection to an address `tenant` may reach.
/// Returns the response and the future that drives the rest of the connection.
pub(crate) async fn send(
    egress: Arc<Egress>,
    tenant: Arc<str>,
    mut request: http::Request<wasmtime_wasi_http::WasiBody>,
    options: RequestOptions,
) -> Result<
    (
        http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Error>>,
        Connection,
    ),
    Error,
> {
    let forever = Duration::from_secs(600);
    let connect_timeout = options.connect_timeout.unwrap_or(forever);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(forever);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(forever)
        .max(Duration::from_nanos(1));
    let uri = request.uri();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = connect(&egress, &tenant, https, &host, port, connect_timeout).await?;
    let stream: Box<dyn Stream> = if https {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(Error::InvalidDnsNameError)?,
        };
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // Drive the connection on its own task, which dies with the future returned for it (that
    // future lives as long as the instance's outgoing request does).
    let mut driver = AbortOnDrop(tokio::spawn(connection));
    // The request line carries the path only (no proxy): scheme and authority go.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let mut idle = tokio::time::interval(between_bytes);
    idle.reset();
    let response = response.map(|incoming| TimedBody { incoming, idle }.boxed_unsync());
    let connection: Connection = Box::new(async move {
        match (&mut driver.0).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if error.is_timeout() => Err(Error::HttpResponseTimeout),
            Ok(Err(error)) => Err(Error::from(error)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, connection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_unless_named() {
        let egress = Egress::default();
        for address in [
            "127.0.0.1:3001",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:3001",
        ] {
            assert!(
                egress.refusal("acme", false, at(address)).is_some(),
                "{address}"
            );
        }
        for address in ["93.184.216.34:80", "[2606:2800:220:1::1]:443"] {
            assert!(
                egress.refusal("acme", false, at(address)).is_none(),
                "{address}"
            );
        }
        let policy =
            Policy::parse("[tenants.acme]\nprivate-outbound = [\"http://127.0.0.1:9000\"]\n")
                .unwrap();
        egress.set_policy(Arc::new(policy));
        assert!(
            egress
                .refusal("acme", false, at("127.0.0.1:9000"))
                .is_none()
        );
        assert!(
            egress
                .refusal("acme", false, at("[::ffff:127.0.0.1]:9000"))
                .is_none()
        );
        assert!(egress.refusal("acme", true, at("127.0.0.1:9000")).is_some());
        assert!(
            egress
                .refusal("globex", false, at("127.0.0.1:9000"))
                .is_some()
        );
    }

    #[test]
    fn own_listeners_are_refused() {
        let egress = Egress::default();
        egress.set_own_listeners(vec![at("0.0.0.0:3001")]);
        let why = egress.refusal("acme", false, at("127.0.0.1:3001")).unwrap();
        assert!(why.contains("own listeners"), "{why}");
    }
}
