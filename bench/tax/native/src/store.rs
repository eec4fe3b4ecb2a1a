//! The services' key-value store natively: Redis over loopback, or an in-process map.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tax_logic::{Kv, MemoryKv, ServiceError};

const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryKv>),
    Redis(Arc<RedisPool>),
}

impl Store {
    /// An in-process store holding the dataset.
    pub fn memory() -> Self {
        Store::Memory(Arc::new(MemoryKv::with_dataset()))
    }

    /// A Redis store; fails now if Redis cannot be reached.
    pub fn redis(url: &str) -> anyhow::Result<Self> {
        let pool = RedisPool {
            client: redis::Client::open(url)?,
            idle: Mutex::new(Vec::new()),
        };
        let connection = pool
            .connect()
            .with_context(|| format!("connecting to {url}"))?;
        pool.give_back(connection);
        Ok(Store::Redis(Arc::new(pool)))
    }

    /// Runs `work` against the store: inline for the map, on a blocking thread for Redis, whose
    /// synchronous round trips must not stall the async workers.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ServiceError>
    where
        F: FnOnce(&dyn Kv) -> Result<T, ServiceError> + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Store::Memory(map) => work(map.as_ref()),
            Store::Redis(pool) => {
                let pool = Arc::clone(pool);
                tokio::task::spawn_blocking(move || pool.with_kv(work))
                    .await
                    .map_err(|e| ServiceError::internal(format!("request handler failed: {e}")))?
            }
        }
    }
}

/// Idle synchronous connections, one taken per request in flight.
pub struct RedisPool {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
}

impl RedisPool {
    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self.client.get_connection_with_timeout(REDIS_TIMEOUT)?;
        connection.set_read_timeout(Some(REDIS_TIMEOUT))?;
        connection.set_write_timeout(Some(REDIS_TIMEOUT))?;
        Ok(connection)
    }

    fn take(&self) -> redis::RedisResult<redis::Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(connection) => Ok(connection),
            None => self.connect(),
        }
    }

    fn give_back(&self, connection: redis::Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(connection);
    }

    fn with_kv<T>(
        &self,
        work: impl FnOnce(&dyn Kv) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let connection = self
            .take()
            .map_err(|e| ServiceError::unavailable(format!("store: {e}")))?;
        let kv = RedisKv {
            connection: RefCell::new(connection),
            failure: RefCell::new(None),
        };
        let result = work(&kv);
        // A failed GET looked like a missing key to the logic: the whole answer is void.
        if let Some(e) = kv.failure.into_inner() {
            return Err(ServiceError::unavailable(format!("store: {e}")));
        }
        self.give_back(kv.connection.into_inner());
        result
    }
}

/// One connection seen through the logic's `Kv`: a GET per `get`, over loopback.
struct RedisKv {
    connection: RefCell<redis::Connection>,
    failure: RefCell<Option<redis::RedisError>>,
}

impl Kv for RedisKv {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        if self.failure.borrow().is_some() {
            return None;
        }
        match redis::cmd("GET")
            .arg(key)
            .query(&mut *self.connection.borrow_mut())
        {
            Ok(value) => value,
            Err(e) => {
                *self.failure.borrow_mut() = Some(e);
                None
            }
        }
    }
}

/// Writes the dataset into Redis, waiting up to 10 s for it to accept connections.
pub fn preload(url: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(url)?;
    let started = Instant::now();
    let mut connection = loop {
        match client.get_connection_with_timeout(REDIS_TIMEOUT) {
            Ok(connection) => break connection,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {url}")),
        }
    };
    let records = tax_logic::dataset();
    for chunk in records.chunks(500) {
        let mut pipeline = redis::pipe();
        for (key, value) in chunk {
            pipeline.set(key, value.as_slice()).ignore();
        }
        pipeline.query::<()>(&mut connection)?;
    }
    Ok(records.len())
}
