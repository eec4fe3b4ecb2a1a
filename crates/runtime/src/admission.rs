//! Admission: which request gets an instance slot, and when.
//!
//! Policy, and why:
//! - The pool has a fixed number of slots (`max_instances`); no more instances than that ever
//!   live at once, so a burst cannot exhaust memory or the pool's address space.
//! - Each tenant may hold at most its quota of slots at once: the smaller of the operator's
//!   per-tenant ceiling and what the tenant's manifests ask for. A tenant that floods the server
//!   therefore fills only its own share, and other tenants' requests still find free slots.
//! - A tenant's requests beyond its quota wait in a short queue of their own (at most
//!   `tenant_max_queue` requests); a request arriving to a full queue is refused at once with
//!   429, rather than making everybody wait. A waiting request gives up at its deadline with 503.
//! - Waiting for a slot is first come, first served (tokio's semaphores are fair), within a
//!   tenant and for the pool.
//! - Each tenant's live instances together may hold at most its memory quota of linear memory
//!   (the smaller of `--tenant-max-memory` and its manifests' `tenant-limits.max-memory`; none by
//!   default, beyond slots × `max-memory`). The account is charged as memories grow, also at
//!   instantiation, and released when an instance is dropped; a growth beyond it is refused,
//!   which ends that request with 429 `tenant_memory` and leaves the tenant's other instances
//!   and every other tenant untouched.
//! - In-process calls (a function calling another) take a slot of the tenant's quota too, since
//!   every live instance is charged to its tenant, but never wait for one: a call finding the
//!   tenant at its quota fails at once with `tenant_quota` (an error value for the caller).
//!   Waiting would let a chain deadlock on its own tenant's quota (every request holding one slot
//!   and waiting for the next hop's); failing fast keeps one tenant's fan-out inside its own
//!   share, never in another tenant's. Then a pool slot, waited for like any request.
//! - A CGI request's body is read whole before admission (a slow client then holds no slot). Its
//!   bytes are charged as they arrive to a server-wide budget of bytes held for requests not
//!   admitted yet (`max_buffered_bodies`: past it, 503 `overloaded`) and to the tenant's memory
//!   quota (past it, 429 `tenant_memory`), until the program that reads them is gone.
//! - Once admitted, a tenant's guest code shares the CPU as `cpu_share` says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use meshwa_manifest::Name;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::InvokeError;
use crate::cpu_share::{CpuShare, TenantCpu};

pub(crate) struct Admission {
    pool: Arc<Semaphore>,
    /// What bodies read before admission may hold together.
    buffered_bodies: Arc<ByteAccount>,
    tenant_ceiling: u32,
    tenant_memory_ceiling: Option<u64>,
    tenant_max_queue: u32,
    tenants: Mutex<HashMap<Name, Arc<TenantGate>>>,
    cpu: Arc<CpuShare>,
    /// The pool's memories are striped with protection keys (see `engine`): a slot may then be
    /// free in another stripe than the one a new store was given.
    striped_pool: bool,
}

/// One tenant's share of the pool.
pub(crate) struct TenantGate {
    tenant: Name,
    slots: Arc<Semaphore>,
    limit: AtomicU32,
    queued: AtomicU32,
    max_queue: u32,
    pub(crate) memory: Arc<TenantMemory>,
    /// The workers its guest code may occupy at once (see `cpu_share`).
    pub(crate) cpu: Arc<TenantCpu>,
}

/// Bytes held against a limit, charged and released atomically: a tenant's memory, the server's
/// budget for bodies not admitted yet, the bytes the host holds for one instance.
pub(crate) struct ByteAccount {
    /// `u64::MAX`: no limit.
    limit: AtomicU64,
    used: AtomicU64,
}

impl ByteAccount {
    pub(crate) fn new(limit: u64) -> ByteAccount {
        ByteAccount {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
        }
    }

    /// Charges `bytes` if the account stays within its limit.
    pub(crate) fn try_charge(&self, bytes: u64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// What may still be charged.
    pub(crate) fn left(&self) -> u64 {
        self.limit()
            .saturating_sub(self.used.load(Ordering::Acquire))
    }

    /// Lowers the limit to `bytes` (it never rises).
    fn lower(&self, bytes: u64) {
        self.limit.fetch_min(bytes, Ordering::Relaxed);
    }
}

/// A tenant's memory account: what all its live instances hold (linear memory, host buffers,
/// bodies read before admission), against its quota.
pub(crate) struct TenantMemory {
    pub(crate) tenant: Name,
    pub(crate) account: ByteAccount,
}

/// Which account refused a [`Charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The narrower budget: the server's for bodies, the instance's for host-held bytes.
    Budget,
    /// The tenant's memory quota.
    Tenant,
}

/// Bytes the host holds, charged to a budget and to the tenant's memory quota at once, and given
/// back to both when dropped.
pub(crate) struct Charge {
    budget: Arc<ByteAccount>,
    tenant: Arc<TenantMemory>,
    bytes: u64,
}

impl Charge {
    /// Nothing charged yet.
    pub(crate) fn empty(budget: Arc<ByteAccount>, tenant: Arc<TenantMemory>) -> Charge {
        Charge {
            budget,
            tenant,
            bytes: 0,
        }
    }

    /// Charges `bytes` more to both accounts, or to neither.
    pub(crate) fn add(&mut self, bytes: u64) -> Result<(), Refused> {
        if !self.budget.try_charge(bytes) {
            return Err(Refused::Budget);
        }
        if !self.tenant.account.try_charge(bytes) {
            self.budget.release(bytes);
            return Err(Refused::Tenant);
        }
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
        self.tenant.account.release(self.bytes);
    }
}

/// The slots an admitted request holds until its instance is gone.
pub(crate) struct Admitted {
    _pool: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

impl Admission {
    pub(crate) fn new(
        max_instances: u32,
        tenant_ceiling: u32,
        tenant_max_queue: u32,
        tenant_memory_ceiling: Option<u64>,
        tenant_cpu_lanes: u32,
        max_buffered_bodies: u64,
        striped_pool: bool,
    ) -> Self {
        Admission {
            pool: Arc::new(Semaphore::new(max_instances as usize)),
            buffered_bodies: Arc::new(ByteAccount::new(max_buffered_bodies)),
            tenant_ceiling: tenant_ceiling.clamp(1, max_instances.max(1)),
            tenant_memory_ceiling,
            tenant_max_queue,
            tenants: Mutex::new(HashMap::new()),
            cpu: CpuShare::new(tenant_cpu_lanes),
            striped_pool,
        }
    }

    pub(crate) fn pool_is_striped(&self) -> bool {
        self.striped_pool
    }

    /// The gate of `tenant`, whose manifests ask for at most `requested` slots (if they say).
    /// The quota only ever tightens: the smallest request of any of the tenant's apps wins.
    pub(crate) fn gate(&self, tenant: &Name, requested: Option<u32>) -> Arc<TenantGate> {
        let limit = requested
            .unwrap_or(self.tenant_ceiling)
            .clamp(1, self.tenant_ceiling);
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gate = tenants.entry(tenant.clone()).or_insert_with(|| {
            Arc::new(TenantGate {
                tenant: tenant.clone(),
                slots: Arc::new(Semaphore::new(limit as usize)),
                limit: AtomicU32::new(limit),
                queued: AtomicU32::new(0),
                max_queue: self.tenant_max_queue,
                memory: Arc::new(TenantMemory {
                    tenant: tenant.clone(),
                    account: ByteAccount::new(self.tenant_memory_ceiling.unwrap_or(u64::MAX)),
                }),
                cpu: self.cpu.tenant(),
            })
        });
        let current = gate.limit.load(Ordering::Relaxed);
        if limit < current {
            // Permits not currently handed out are removed now; the rest as they come back.
            gate.slots.forget_permits((current - limit) as usize);
            gate.limit.store(limit, Ordering::Relaxed);
        }
        gate.clone()
    }

    /// Lowers `tenant`'s memory quota to `bytes` (a manifest's `tenant-limits.max-memory`); the
    /// operator's ceiling still applies and the smallest wins.
    pub(crate) fn limit_memory(&self, tenant: &Name, bytes: u64) {
        self.gate(tenant, None).memory.account.lower(bytes);
    }

    /// An empty charge for a body read before admission, for `gate`'s tenant.
    pub(crate) fn body_charge(&self, gate: &TenantGate) -> Charge {
        Charge::empty(self.buffered_bodies.clone(), gate.memory.clone())
    }

    /// Pool slots not held by any instance now.
    pub(crate) fn free_slots(&self) -> usize {
        self.pool.available_permits()
    }

    /// Admits a request from outside: a tenant slot, then a pool slot.
    pub(crate) async fn admit_request(
        &self,
        gate: &TenantGate,
        deadline: Instant,
    ) -> Result<Admitted, InvokeError> {
        let tenant = match gate.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if gate.queued.fetch_add(1, Ordering::AcqRel) >= gate.max_queue {
                    gate.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(InvokeError::TenantQuota {
                        tenant: gate.tenant.to_string(),
                        limit: gate.limit.load(Ordering::Relaxed),
                    });
                }
                let waited =
                    tokio::time::timeout_at(deadline, gate.slots.clone().acquire_owned()).await;
                gate.queued.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_closed)) => return Err(shutting_down()),
                    Err(_elapsed) => return Err(InvokeError::Overloaded),
                }
            }
        };
        let pool = self.pool_slot(deadline).await?;
        Ok(Admitted {
            _pool: pool,
            _tenant: tenant,
        })
    }

    /// Admits an in-process call: a tenant slot if one is free now, then a pool slot (see the
    /// module docs).
    pub(crate) async fn admit_call(
        &self,
        gate: &TenantGate,
        deadline: Instant,
    ) -> Result<Admitted, InvokeError> {
        let tenant =
            gate.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| InvokeError::TenantQuota {
                    tenant: gate.tenant.to_string(),
                    limit: gate.limit.load(Ordering::Relaxed),
                })?;
        Ok(Admitted {
            _pool: self.pool_slot(deadline).await?,
            _tenant: tenant,
        })
    }

    async fn pool_slot(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, InvokeError> {
        if let Ok(permit) = self.pool.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout_at(deadline, self.pool.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(shutting_down()),
            Err(_elapsed) => Err(InvokeError::Overloaded),
        }
    }
}

fn shutting_down() -> InvokeError {
    InvokeError::Host("runtime is shutting down".into())
}
