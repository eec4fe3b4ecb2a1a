//! The network card: virtio-net on the PCI bus (QEMU `-device virtio-net-pci`), driven by the
//! `virtio-drivers` crate and exposed to `smoltcp` as an Ethernet device.
//!
//! The PCI configuration space is reached through the legacy I/O ports (mechanism #1), which
//! QEMU's `pc` machine has; SeaBIOS has assigned the BARs before the kernel starts. DMA needs no
//! translation: the address space is identity-mapped, so a buffer's address is its bus address.

use alloc::alloc::{alloc_zeroed, dealloc};
use core::alloc::Layout;
use core::cell::RefCell;
use core::ptr::NonNull;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};
use x86_64::instructions::port::Port;

/// Descriptors per virtqueue.
const QUEUE_SIZE: usize = 64;
/// Bytes per receive buffer: one Ethernet frame (no offloads negotiated).
const BUFFER_BYTES: usize = 2048;

pub type Nic = VirtIONet<KernelHal, PciTransport, QUEUE_SIZE>;

/// PCI configuration mechanism #1: address to 0xcf8, data at 0xcfc.
pub struct PortCam;

impl PortCam {
    fn select(device_function: DeviceFunction, register_offset: u8) {
        let address = 0x8000_0000
            | (u32::from(device_function.bus) << 16)
            | (u32::from(device_function.device) << 11)
            | (u32::from(device_function.function) << 8)
            | u32::from(register_offset & 0xfc);
        // SAFETY: the configuration address port; selects a register, touches no memory.
        unsafe { Port::<u32>::new(0xcf8).write(address) };
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        PortCam::select(device_function, register_offset);
        // SAFETY: reads the register selected above.
        unsafe { Port::<u32>::new(0xcfc).read() }
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        PortCam::select(device_function, register_offset);
        // SAFETY: writes the register selected above; the driver writes only what the virtio
        // and PCI specifications define.
        unsafe { Port::<u32>::new(0xcfc).write(data) };
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// DMA memory for the driver: page-aligned heap allocations, identity-mapped.
pub struct KernelHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory that stays allocated until
// `dma_dealloc`; physical and virtual addresses are equal (identity mapping), so `share` hands the
// device the buffer's own address.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = match Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE) {
            Ok(layout) => layout,
            Err(_) => panic!("DMA allocation of {pages} pages"),
        };
        // SAFETY: the layout has a non-zero size (pages > 0 for every virtqueue).
        let pointer = unsafe { alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(pointer) else {
            panic!("out of memory for {pages} DMA pages");
        };
        (pointer.as_ptr() as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        if let Ok(layout) = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE) {
            // SAFETY: allocated by `dma_alloc` with this layout.
            unsafe { dealloc(vaddr.as_ptr(), layout) };
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        match NonNull::new(paddr as *mut u8) {
            Some(pointer) => pointer,
            None => panic!("a device BAR at address 0"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

pub enum NetError {
    NoDevice,
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    Driver(virtio_drivers::Error),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NoDevice => write!(f, "no virtio network device on PCI bus 0"),
            NetError::Transport(error) => write!(f, "virtio PCI transport: {error}"),
            NetError::Driver(error) => write!(f, "virtio-net driver: {error}"),
        }
    }
}

/// Finds the first virtio network device on bus 0 and starts its driver.
pub fn find_nic() -> Result<Nic, NetError> {
    let mut root = PciRoot::new(PortCam);
    let found = root.enumerate_bus(0).find(|(_, info)| {
        virtio_drivers::transport::pci::virtio_device_type(info) == Some(DeviceType::Network)
    });
    let (device_function, _) = found.ok_or(NetError::NoDevice)?;
    root.set_command(
        device_function,
        Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
    let transport = PciTransport::new::<KernelHal, _>(&mut root, device_function)
        .map_err(NetError::Transport)?;
    debug_assert_eq!(transport.device_type(), DeviceType::Network);
    Nic::new(transport, BUFFER_BYTES).map_err(NetError::Driver)
}

/// `smoltcp`'s view of the card. Its two tokens of one received frame share the driver, which
/// smoltcp uses one after the other (reply after reading), hence the `RefCell`.
pub struct Device(pub RefCell<Nic>);

pub struct RxToken<'a>(&'a RefCell<Nic>, RxBuffer);
pub struct TxToken<'a>(&'a RefCell<Nic>);

impl phy::Device for Device {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let nic = &self.0;
        let buffer = {
            let mut driver = nic.borrow_mut();
            if !driver.can_recv() || !driver.can_send() {
                return None;
            }
            driver.receive().ok()?
        };
        Some((RxToken(nic, buffer), TxToken(nic)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        self.0.borrow().can_send().then_some(TxToken(&self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = 1514;
        capabilities.max_burst_size = Some(QUEUE_SIZE / 2);
        capabilities
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let RxToken(nic, buffer) = self;
        let result = f(buffer.packet());
        // A buffer that cannot be given back shrinks the receive queue by one; nothing better can
        // be done here than to go on.
        let _ = nic.borrow_mut().recycle_rx_buffer(buffer);
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut driver = self.0.borrow_mut();
        let mut buffer = driver.new_tx_buffer(len);
        let result = f(buffer.packet_mut());
        // A frame the card refuses is lost like a frame on a wire; TCP sends it again.
        let _ = driver.send(buffer);
        result
    }
}
