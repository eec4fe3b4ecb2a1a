//! meshwa's host as a unikernel (issue 23): the machine is one address space in which this kernel,
//! wasmtime and the tenants' functions live; there is no process and no user mode. Functions are
//! isolated from each other and from the kernel by WebAssembly's software fault isolation alone.
//!
//! Boot (PVH, `boot`) → heap over the RAM QEMU reports (`memory`) → timer and exceptions
//! (`interrupts`) → the bundle of precompiled functions from `-initrd` loaded into wasmtime
//! (`meshwa_unikernel_runtime`) → virtio-net and a TCP/IP stack (`net`, smoltcp) → HTTP (`http`),
//! a fresh instance per request. One CPU, no threads: the server polls its sockets in a loop and
//! runs one function at a time; the timer interrupt advances wasmtime's epoch, which interrupts a
//! function past its deadline.

#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod cpu;
mod http;
mod interrupts;
mod memory;
mod net;
mod power;
mod random;
mod serial;

use alloc::vec::Vec;
use core::cell::RefCell;

use meshwa_unikernel_runtime::{Bundle, Server, wasmtime};
use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use spin::Once;

/// QEMU's user-mode network: the guest is 10.0.2.15, the host's side 10.0.2.2.
const ADDRESS: IpAddress = IpAddress::v4(10, 0, 2, 15);
const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
const DEFAULT_PORT: u16 = 8080;
/// Quiet milliseconds after which the server loop halts between timer ticks.
const IDLE_BEFORE_HALT_MS: u64 = 50;

static ENGINE: Once<wasmtime::Engine> = Once::new();

fn tick_epoch() {
    if let Some(engine) = ENGINE.get() {
        engine.increment_epoch();
    }
}

/// Settings from the kernel command line (`-append "port=8080 log=requests"`).
struct Settings {
    port: u16,
    log_requests: bool,
    /// `bench=N`: before serving, time N requests to the first route in-process (a fresh
    /// instance each) and print the median and 99th percentile: the per-request cost inside
    /// the image, without the network.
    bench: usize,
}

impl Settings {
    fn parse(cmdline: &str) -> Settings {
        let mut settings = Settings {
            port: DEFAULT_PORT,
            log_requests: false,
            bench: 0,
        };
        for word in cmdline.split_whitespace() {
            match word.split_once('=') {
                Some(("port", port)) => match port.parse() {
                    Ok(port) => settings.port = port,
                    Err(_) => println!("meshwa: ignoring bad port={port}"),
                },
                Some(("log", "requests")) => settings.log_requests = true,
                Some(("bench", count)) => match count.parse() {
                    Ok(count) => settings.bench = count,
                    Err(_) => println!("meshwa: ignoring bad bench={count}"),
                },
                _ => println!("meshwa: ignoring unknown setting {word}"),
            }
        }
        settings
    }
}

#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: u32) -> ! {
    let entered = interrupts::rdtsc();
    // SAFETY: `start_info` is what the PVH entry received; this is the first thing the kernel
    // does, before any allocation.
    let boot = match unsafe { memory::init(start_info) } {
        Ok(boot) => boot,
        Err(error) => {
            println!("meshwa: cannot boot: {error:?} (boot with QEMU -kernel and -initrd BUNDLE)");
            power::power_off();
        }
    };
    if !cpu::has_rdrand() {
        fail(format_args!(
            "the CPU has no RDRAND (QEMU: -cpu ...,rdrand)"
        ));
    }
    interrupts::init();
    interrupts::calibrate_tsc();
    let settings = Settings::parse(boot.cmdline);
    println!(
        "meshwa: {} MiB of heap, bundle of {} KiB",
        (boot.heap.end - boot.heap.start) >> 20,
        boot.bundle.len() >> 10
    );

    let bundle = match Bundle::decode(boot.bundle) {
        Ok(bundle) => bundle,
        Err(error) => fail(format_args!("bad bundle: {error}")),
    };
    let mut config = meshwa_unikernel_runtime::engine_config(bundle.execution);
    // SAFETY: `cpu::host_feature` answers from CPUID, and says "absent" for what the kernel has
    // not enabled (AVX), so wasmtime never loads code using an instruction this CPU would fault
    // on.
    unsafe { config.detect_host_feature(cpu::host_feature) };
    let engine = match wasmtime::Engine::new(&config) {
        Ok(engine) => ENGINE.call_once(|| engine),
        Err(error) => fail(format_args!("cannot create the engine: {error}")),
    };
    interrupts::on_tick(&tick_epoch);
    meshwa_unikernel_runtime::set_clock(interrupts::now_ns);
    meshwa_unikernel_runtime::set_random(random::fill);
    meshwa_unikernel_runtime::set_log_sink(|line| println!("{line}"));
    let execution = bundle.execution;
    let server = match Server::new(engine, bundle) {
        Ok(server) => server,
        Err(error) => fail(format_args!("{error}")),
    };
    println!("meshwa: {execution:?} code");
    for route in server.routes() {
        println!("meshwa: serving {route}");
    }

    if settings.bench > 0 {
        bench_in_process(&server, settings.bench);
    }

    let nic = match net::find_nic() {
        Ok(nic) => nic,
        Err(error) => fail(format_args!(
            "no network: {error} (QEMU -device virtio-net-pci)"
        )),
    };
    let mac = nic.mac_address();
    let mut device = net::Device(RefCell::new(nic));
    let now = || Instant::from_micros((interrupts::now_ns() / 1000) as i64);
    let mut interface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut device,
        now(),
    );
    interface.update_ip_addrs(|addresses| {
        let _ = addresses.push(IpCidr::new(ADDRESS, 24));
    });
    let _ = interface.routes_mut().add_default_ipv4_route(GATEWAY);
    let mut sockets = SocketSet::new(Vec::new());
    let mut connections: Vec<http::Connection> = (0..http::CONNECTIONS)
        .map(|_| http::Connection::listen(&mut sockets, settings.port))
        .collect();
    let boot_ms = (interrupts::rdtsc().saturating_sub(entered)) as u128 * 1000
        / u128::from(interrupts::tsc_per_second());
    println!(
        "meshwa: listening on {}:{} (kernel ready {} ms after entry)",
        ADDRESS, settings.port, boot_ms
    );

    let mut handle = |request: meshwa_unikernel_runtime::Request| {
        let started = interrupts::now_ns();
        let method = if settings.log_requests {
            Some(request.method.clone())
        } else {
            None
        };
        let path = if settings.log_requests {
            Some(request.path_with_query.clone())
        } else {
            None
        };
        let response = server.handle(request);
        if let (Some(method), Some(path)) = (method, path) {
            let micros = (interrupts::now_ns() - started) / 1000;
            println!("{method} {path} {} {micros} us", response.status);
        }
        response
    };
    let mut console = serial::LineReader::new();
    let mut busy_at_ms = 0;
    loop {
        let mut busy = interface.poll(now(), &mut device, &mut sockets) != PollResult::None;
        let now_ms = interrupts::now_ns() / 1_000_000;
        for connection in connections.iter_mut() {
            busy |= connection.poll(&mut sockets, now_ms, &mut handle);
        }
        if busy {
            busy_at_ms = now_ms;
            continue;
        }
        // Poll flat out while traffic flows; once the network has been quiet for a while, sleep
        // until the next timer tick rather than spin a host CPU for nothing. The price: a request
        // arriving after a quiet spell waits up to one tick (10 ms) to be seen.
        if now_ms.saturating_sub(busy_at_ms) > IDLE_BEFORE_HALT_MS {
            x86_64::instructions::hlt();
        }
        if let Some(line) = console.poll() {
            if line.trim() == "shutdown" {
                println!("meshwa: shutting down");
                power::power_off();
            }
            println!("meshwa: unknown console command {line:?} (try: shutdown)");
        }
    }
}

/// `bench=N` (see `Settings`): GET on the first route, N times, each a fresh instance.
fn bench_in_process(server: &Server, count: usize) {
    let Some(route) = server.routes().next() else {
        return;
    };
    let path = alloc::string::ToString::to_string(route.route);
    let mut nanos = Vec::with_capacity(count);
    let mut failures = 0usize;
    for _ in 0..count {
        let request = meshwa_unikernel_runtime::Request {
            method: "GET".into(),
            path_with_query: path.clone(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let started = interrupts::now_ns();
        let response = server.handle(request);
        nanos.push(interrupts::now_ns().saturating_sub(started));
        failures += usize::from(response.status != 200);
    }
    nanos.sort_unstable();
    let at = |quantile: usize| nanos[(nanos.len() - 1) * quantile / 100] / 1000;
    println!(
        "meshwa: bench {path}: {count} fresh instances, p50 {} us, p99 {} us, {failures} not 200, heap in use {} KiB",
        at(50),
        at(99),
        memory::heap_used() / 1024
    );
}

fn fail(message: core::fmt::Arguments) -> ! {
    println!("meshwa: {message}");
    power::power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("meshwa: kernel panic: {info}");
    power::halt_forever()
}
