//! From QEMU's PVH entry to Rust: 32-bit protected mode → identity-mapped long mode → `kernel_main`.
//!
//! Why PVH: QEMU boots an ELF kernel with a `XEN_ELFNOTE_PHYS32_ENTRY` note directly (`-kernel`),
//! hands it a `hvm_start_info` (memory map, command line, the `-initrd` file as a module), and needs
//! no boot loader: nothing here is downloaded or prebuilt (issue 23, item 4). The protocol enters in
//! 32-bit protected mode with paging off, so the first instructions build page tables that map the
//! low 4 GiB one-to-one with 2 MiB pages (RAM, the PCI holes and the local APIC all live there),
//! enable long mode and jump to 64-bit code. One address space, identity-mapped: a physical address
//! is its own virtual address, which is what the virtio driver's DMA needs.

use core::arch::global_asm;

/// Bytes of the boot stack. wasmtime's interpreter and the component model's host calls recurse;
/// 1 MiB leaves a wide margin (there is no guard page below it: overflow is caught by wasmtime's
/// own stack limit for guest code, and host code is bounded).
pub const BOOT_STACK_BYTES: usize = 1 << 20;

// The PVH note: name "Xen", type 18 (XEN_ELFNOTE_PHYS32_ENTRY), the 32-bit physical entry point.
global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_start
    .popsection
"#
);

// Page tables (one PML4, one PDPT, four page directories of 2 MiB pages), the GDT and the stack.
global_asm!(
    r#"
    .pushsection .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096 * 4
    .p2align 4
boot_stack_bottom: .skip {stack}
boot_stack_top:
    .popsection

    .pushsection .rodata.boot, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff   /* 0x08: 64-bit code, present, ring 0 */
    .quad 0x00cf92000000ffff   /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    /* ebx: physical address of hvm_start_info; keep it in esi until kernel_main takes it. */
    mov esi, ebx
    /* The protocol leaves esp undefined. */
    mov esp, offset boot_stack_top

    /* Zero .bss: statics start at zero. */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four directories; each directory entry a 2 MiB page. */
    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [boot_pml4], eax
    mov edi, offset boot_pdpt
    mov eax, offset boot_pd
    or eax, 0x3
    mov ecx, 4
1:
    mov [edi], eax
    add eax, 4096
    add edi, 8
    loop 1b
    mov edi, offset boot_pd
    mov eax, 0x83            /* present | writable | 2 MiB page */
    mov ecx, 2048
2:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop 2b

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x620            /* PAE | OSFXSR | OSXMMEXCPT: SSE for compiled wasm's floats */
    mov cr4, eax
    mov ecx, 0xC0000080      /* EFER */
    rdmsr
    or eax, 0x100            /* long mode enable */
    wrmsr
    mov eax, cr0
    and eax, 0xfffffffb      /* no x87 emulation (EM) */
    or eax, 0x80010003       /* paging | write protect | monitor coprocessor | protected mode */
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    push 0x08
    mov eax, offset boot_long_mode
    push eax
    retf

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor ax, ax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + boot_stack_top]
    mov edi, esi             /* first argument: the start info's physical address */
    call kernel_main
3:
    hlt
    jmp 3b
    .popsection
"#,
    stack = const BOOT_STACK_BYTES,
);
