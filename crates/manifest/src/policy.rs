//! The operator's policy: the walls a tenant's manifest cannot move.
//!
//! A tenant writes its own `meshwa.toml`, so nothing in it can be trusted to bound the tenant:
//! the policy (`meshwa serve --policy FILE`, TOML) sets, per tenant, the ceilings every
//! manifest limit must stay under, how many apps, stores and tokens a tenant may have, which
//! outbound origins it may grant at all, which private addresses its functions may reach, and
//! the route prefixes it owns, and how much disk its apps may take. Without a file, [`Policy::default`] applies: the ceilings below,
//! any public origin grantable, no private address reachable, and each tenant's routes under
//! `/<tenant>`.
//!
//! ```toml
//! [defaults]                         # every tenant, unless its own table says otherwise
//! max-timeout = "60s"
//! max-request-body = "64MiB"
//! max-outbound-response = "64MiB"
//! max-store-size = "1GiB"            # each key-value store's max-total-size
//! max-apps = 32
//! max-stores = 32                    # over all the tenant's apps
//! max-tokens = 16
//! max-disk = "8GiB"                  # its uploaded apps plus its stores' max-total-size
//! outbound = ["https://*:*", "http://*:*"]   # what a tenant may put in grants.outbound
//! private-outbound = []              # loopback/private/link-local destinations, by address
//!
//! [tenants.acme]                     # one tenant's exceptions, key by key
//! routes = ["/acme", "/shop"]        # route prefixes it owns (default: "/<tenant>")
//! private-outbound = ["http://10.0.0.5:8080"]
//! ```
//!
//! The policy applies to what tenants deploy through the control plane, and again when a stored
//! app is restored at start (an app the policy no longer allows is not served). Apps given on
//! `meshwa serve`'s command line are the operator's own and are not checked against it, except
//! for outbound destinations, which are checked for every function at connect time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::units::{parse_duration, parse_size};
use crate::{Manifest, Name, OutboundRule, Route};

/// The longest timeout any manifest may set, policy or not: deadlines are computed as "now +
/// timeout", which must not overflow, and no invocation is meant to run for more than an hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The operator's policy, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    defaults: TenantPolicy,
    /// Keys given per tenant, over the defaults.
    tenants: BTreeMap<Name, TenantPolicy>,
}

/// What one tenant may do.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicy {
    pub max_timeout: Duration,
    pub max_request_body: u64,
    pub max_outbound_response: u64,
    /// Ceiling of each store's `max-total-size`.
    pub max_store_size: u64,
    pub max_apps: u32,
    /// Stores over all the tenant's apps.
    pub max_stores: u32,
    pub max_tokens: u32,
    /// Disk over all the tenant's apps: their uploaded files, and the `max-total-size` of each
    /// of their stores (reserved whole, since a store may grow to it at any time).
    pub max_disk: u64,
    /// What a tenant may grant in `grants.outbound`: each grant must be covered by one of these.
    pub outbound: Vec<OutboundRule>,
    /// Loopback, private and link-local destinations its functions may connect to, by address.
    pub private_outbound: Vec<OutboundRule>,
    /// Route prefixes the tenant owns; `None` is `/<tenant>`.
    pub routes: Option<Vec<Route>>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            max_timeout: Duration::from_secs(60),
            max_request_body: 64 * 1024 * 1024,
            max_outbound_response: 64 * 1024 * 1024,
            max_store_size: 1024 * 1024 * 1024,
            max_apps: 32,
            max_stores: 32,
            max_tokens: 16,
            max_disk: 8 * 1024 * 1024 * 1024,
            outbound: vec![OutboundRule::any(true), OutboundRule::any(false)],
            private_outbound: Vec::new(),
            routes: None,
        }
    }
}

impl TenantPolicy {
    /// The route prefixes `tenant` owns.
    pub fn route_prefixes(&self, tenant: &Name) -> Vec<Route> {
        match &self.routes {
            Some(routes) => routes.clone(),
            // A name is a valid route segment; were it not, the tenant would own no route.
            None => Route::new(&format!("/{tenant}")).into_iter().collect(),
        }
    }
}

/// Why a policy file was refused: the operator's fault, so `meshwa serve` does not start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot read the policy: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    defaults: RawTenantPolicy,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenantPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTenantPolicy {
    max_timeout: Option<String>,
    max_request_body: Option<String>,
    max_outbound_response: Option<String>,
    max_store_size: Option<String>,
    max_apps: Option<u32>,
    max_stores: Option<u32>,
    max_tokens: Option<u32>,
    max_disk: Option<String>,
    outbound: Option<Vec<String>>,
    private_outbound: Option<Vec<String>>,
    routes: Option<Vec<String>>,
}

impl RawTenantPolicy {
    /// `base` with the keys this table sets.
    fn over(self, base: &TenantPolicy, table: &str) -> Result<TenantPolicy, String> {
        let at = |key: &str, message: String| format!("[{table}] `{key}`: {message}");
        let size = |key: &str, value: Option<String>, default: u64| match value {
            Some(text) => parse_size(&text).map_err(|e| at(key, e)),
            None => Ok(default),
        };
        let rules = |key: &str, value: Option<Vec<String>>, default: &Vec<OutboundRule>| match value
        {
            Some(list) => list
                .iter()
                .map(|text| OutboundRule::parse(text).map_err(|e| at(key, e)))
                .collect(),
            None => Ok(default.clone()),
        };
        let max_timeout = match self.max_timeout {
            Some(text) => parse_duration(&text).map_err(|e| at("max-timeout", e))?,
            None => base.max_timeout,
        };
        if max_timeout > MAX_TIMEOUT || max_timeout.is_zero() {
            return Err(at(
                "max-timeout",
                format!(
                    "must be more than 0 and at most {}",
                    humantime::format_duration(MAX_TIMEOUT)
                ),
            ));
        }
        let routes = match self.routes {
            Some(list) => Some(
                list.iter()
                    .map(|text| Route::new(text).map_err(|e| at("routes", e)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => base.routes.clone(),
        };
        Ok(TenantPolicy {
            max_timeout,
            max_request_body: size(
                "max-request-body",
                self.max_request_body,
                base.max_request_body,
            )?,
            max_outbound_response: size(
                "max-outbound-response",
                self.max_outbound_response,
                base.max_outbound_response,
            )?,
            max_store_size: size("max-store-size", self.max_store_size, base.max_store_size)?,
            max_apps: self.max_apps.unwrap_or(base.max_apps),
            max_stores: self.max_stores.unwrap_or(base.max_stores),
            max_tokens: self.max_tokens.unwrap_or(base.max_tokens),
            max_disk: size("max-disk", self.max_disk, base.max_disk)?,
            outbound: rules("outbound", self.outbound, &base.outbound)?,
            private_outbound: rules(
                "private-outbound",
                self.private_outbound,
                &base.private_outbound,
            )?,
            routes,
        })
    }
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a policy's text.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let defaults = raw.defaults.over(&TenantPolicy::default(), "defaults")?;
        let mut tenants = BTreeMap::new();
        for (name, table) in raw.tenants {
            let tenant = Name::new(&name).map_err(|e| format!("[tenants.{name}]: {e}"))?;
            let policy = table.over(&defaults, &format!("tenants.{name}"))?;
            tenants.insert(tenant, policy);
        }
        Ok(Policy { defaults, tenants })
    }

    /// What `tenant` may do.
    pub fn tenant(&self, tenant: &str) -> &TenantPolicy {
        self.tenants.get(tenant).unwrap_or(&self.defaults)
    }

    /// Everything in `manifest` that its tenant's policy does not allow, one message per
    /// problem naming the function or store and the limit (empty if it is allowed). Counts
    /// over the tenant's other apps (apps, stores) are the control plane's to check.
    pub fn check_app(&self, manifest: &Manifest) -> Vec<String> {
        let policy = self.tenant(manifest.tenant.as_str());
        let mut problems = Vec::new();
        let prefixes = policy.route_prefixes(&manifest.tenant);
        for function in &manifest.functions {
            let name = &function.name;
            let limits = &function.limits;
            let mut over = |key: &str, asked: String, ceiling: String| {
                problems.push(format!(
                    "function `{name}`: limits.{key} = {asked} is over the operator's ceiling of {ceiling} (policy max-{key})"
                ));
            };
            if limits.timeout > policy.max_timeout {
                over(
                    "timeout",
                    humantime::format_duration(limits.timeout).to_string(),
                    humantime::format_duration(policy.max_timeout).to_string(),
                );
            }
            if limits.max_request_body > policy.max_request_body {
                over(
                    "request-body",
                    limits.max_request_body.to_string(),
                    policy.max_request_body.to_string(),
                );
            }
            if limits.max_outbound_response > policy.max_outbound_response {
                over(
                    "outbound-response",
                    limits.max_outbound_response.to_string(),
                    policy.max_outbound_response.to_string(),
                );
            }
            for grant in &function.grants.outbound {
                if !policy.outbound.iter().any(|allowed| allowed.covers(grant)) {
                    problems.push(format!(
                        "function `{name}`: grants.outbound {grant} is not an origin the operator lets tenant `{}` grant (policy outbound)",
                        manifest.tenant
                    ));
                }
            }
            if let Some(route) = &function.route
                && !prefixes.iter().any(|prefix| prefix.covers(route))
            {
                let owned: Vec<&str> = prefixes.iter().map(Route::as_str).collect();
                problems.push(format!(
                    "function `{name}`: route {route} is outside tenant `{}`'s routes ({}; policy routes)",
                    manifest.tenant,
                    owned.join(", ")
                ));
            }
        }
        for store in &manifest.stores {
            if store.quota.max_total_size > policy.max_store_size {
                problems.push(format!(
                    "key-value store `{}`: max-total-size = {} is over the operator's ceiling of {} (policy max-store-size)",
                    store.name, store.quota.max_total_size, policy.max_store_size
                ));
            }
        }
        problems
    }

    /// What the policy refuses in `tenant` having `usage` over all its apps (empty if nothing).
    pub fn check_usage(&self, tenant: &str, usage: TenantUsage) -> Vec<String> {
        let policy = self.tenant(tenant);
        let mut problems = Vec::new();
        if usage.apps > policy.max_apps as usize {
            problems.push(format!(
                "tenant `{tenant}` would have {} apps, more than the {} the operator allows (policy max-apps)",
                usage.apps, policy.max_apps
            ));
        }
        if usage.stores > policy.max_stores as usize {
            problems.push(format!(
                "tenant `{tenant}` would have {} key-value stores over its apps, more than the {} the operator allows (policy max-stores)",
                usage.stores, policy.max_stores
            ));
        }
        if usage.disk > policy.max_disk {
            problems.push(format!(
                "tenant `{tenant}` would take {} bytes of disk (uploaded files and stores' max-total-size over its apps), more than the {} the operator allows (policy max-disk)",
                usage.disk, policy.max_disk
            ));
        }
        problems
    }
}

/// What a tenant would have over all its deployed apps: what [`Policy::check_usage`] bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantUsage {
    pub apps: usize,
    pub stores: usize,
    /// Bytes of uploaded files plus every store's `max-total-size`.
    pub disk: u64,
}

impl TenantUsage {
    /// One app's share: its stores, and its `upload_bytes` of files plus their quotas.
    pub fn of_app(manifest: &Manifest, upload_bytes: u64) -> TenantUsage {
        TenantUsage {
            apps: 1,
            stores: manifest.stores.len(),
            disk: manifest.stores.iter().fold(upload_bytes, |sum, store| {
                sum.saturating_add(store.quota.max_total_size)
            }),
        }
    }
}

impl std::ops::Add for TenantUsage {
    type Output = TenantUsage;
    fn add(self, other: TenantUsage) -> TenantUsage {
        TenantUsage {
            apps: self.apps + other.apps,
            stores: self.stores + other.stores,
            disk: self.disk.saturating_add(other.disk),
        }
    }
}

impl std::iter::Sum for TenantUsage {
    fn sum<I: Iterator<Item = TenantUsage>>(iter: I) -> TenantUsage {
        iter.fold(TenantUsage::default(), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.wasm"), b"").unwrap();
        let path = dir.path().join("meshwa.toml");
        std::fs::write(&path, text).unwrap();
        Manifest::load(&path).unwrap()
    }

    const APP: &str = r#"
tenant = "acme"
app = "shop"
[[functions]]
name = "front"
component = "f.wasm"
route = "/acme/front"
limits = { timeout = "30s" }
[functions.grants]
outbound = ["https://api.example.com"]
[key-value.orders]
max-total-size = "100MiB"
"#;

    #[test]
    fn defaults_allow_an_ordinary_app() {
        assert_eq!(
            Policy::default().check_app(&manifest(APP)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_ceiling_is_named_when_crossed() {
        let policy = Policy::parse(
            r#"
[defaults]
max-timeout = "10s"
max-store-size = "10MiB"
outbound = ["https://*.internal.example"]
"#,
        )
        .unwrap();
        let problems = policy.check_app(&manifest(APP)).join("\n");
        for expected in [
            "limits.timeout = 30s is over the operator's ceiling of 10s (policy max-timeout)",
            "grants.outbound https://api.example.com is not an origin",
            "max-total-size = 104857600 is over the operator's ceiling of 10485760",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not in:\n{problems}"
            );
        }
    }

    #[test]
    fn routes_stay_in_the_tenant_namespace() {
        let squat = APP.replace("/acme/front", "/");
        let problems = Policy::default().check_app(&manifest(&squat));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("route / is outside tenant `acme`'s routes (/acme"));
        let other = APP.replace("/acme/front", "/acmex/front");
        assert_eq!(Policy::default().check_app(&manifest(&other)).len(), 1);
        let exact = APP.replace("/acme/front", "/acme");
        assert!(Policy::default().check_app(&manifest(&exact)).is_empty());
        let assigned = Policy::parse("[tenants.acme]\nroutes = [\"/shop\"]\n").unwrap();
        let shop = APP.replace("/acme/front", "/shop/cart");
        assert!(assigned.check_app(&manifest(&shop)).is_empty());
        assert_eq!(assigned.check_app(&manifest(APP)).len(), 1);
    }

    #[test]
    fn counts_over_a_tenants_apps() {
        let policy =
            Policy::parse("[defaults]\nmax-apps = 2\nmax-stores = 3\nmax-disk = \"1MiB\"\n")
                .unwrap();
        let usage = |apps, stores, disk| TenantUsage { apps, stores, disk };
        assert!(policy.check_usage("acme", usage(2, 3, 1 << 20)).is_empty());
        let problems = policy
            .check_usage("acme", usage(3, 4, (1 << 20) + 1))
            .join("\n");
        assert!(problems.contains("3 apps, more than the 2"), "{problems}");
        assert!(problems.contains("4 key-value stores"), "{problems}");
        assert!(
            problems.contains("1048577 bytes of disk") && problems.contains("policy max-disk"),
            "{problems}"
        );
        // An app's share: its files plus what each of its stores may grow to.
        let app = TenantUsage::of_app(&manifest(APP), 1000);
        assert_eq!(app, usage(1, 1, 1000 + 100 * 1024 * 1024));
        assert_eq!([app, app].into_iter().sum::<TenantUsage>(), app + app);
    }

    #[test]
    fn tenant_tables_override_key_by_key() {
        let policy = Policy::parse(
            "[defaults]\nmax-apps = 3\nmax-tokens = 2\n[tenants.acme]\nmax-apps = 10\n",
        )
        .unwrap();
        assert_eq!(policy.tenant("acme").max_apps, 10);
        assert_eq!(policy.tenant("acme").max_tokens, 2);
        assert_eq!(policy.tenant("globex").max_apps, 3);
    }

    #[test]
    fn bad_policies_are_refused_with_the_key() {
        for (text, expected) in [
            ("[defaults]\nmax-timout = \"1s\"\n", "unknown field"),
            (
                "[defaults]\nmax-timeout = \"9000000000000000000s\"\n",
                "max-timeout",
            ),
            ("[defaults]\nmax-timeout = \"0s\"\n", "max-timeout"),
            ("[defaults]\noutbound = [\"ftp://x\"]\n", "outbound"),
            ("[tenants.Bad_Name]\nmax-apps = 1\n", "tenants.Bad_Name"),
            ("[tenants.acme]\nroutes = [\"acme\"]\n", "routes"),
        ] {
            let error = Policy::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
