/*
 * c-unsafe: an HTTP function in C with real memory-safety bugs, one per path. Used by the
 * containment tests (crates/gateway/tests/all/legacy.rs) and described in docs/languages.md.
 *
 *   /unsafe/ok              answers "ok", and the state a fresh instance must have
 *   /unsafe/stack-overflow  strcpy of the request body into a 16-byte stack buffer
 *   /unsafe/heap-overflow   memset far past the end of a 16-byte malloc'ed block, then malloc again
 *   /unsafe/use-after-free  writes through a freed pointer, then reads a new allocation
 *   /unsafe/wild-write      writes through a pointer far outside linear memory
 *   /unsafe/null-deref      writes through NULL, then reads it back
 *   /unsafe/corrupt         corrupts the global state, answers normally
 *
 * Every response ends with the global state's check ("clean" or "corrupted"): a corrupted
 * instance must never serve a second request, so the next /unsafe/ok must say "clean".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshwa.h"

/* Global state a fresh instance starts with. */
static char marker[32] = "pristine";
static int requests_served = 0;

static void report(meshwa_response *res) {
    int clean = strcmp(marker, "pristine") == 0 && requests_served == 1;
    meshwa_response_printf(res, "state: %s (marker=%.16s, requests=%d)\n", clean ? "clean" : "corrupted",
                           marker, requests_served);
}

/* noinline: keep the compiler from seeing through the bugs and removing them. */
__attribute__((noinline)) static void stack_overflow(const char *input, meshwa_response *res) {
    char small[16];
    strcpy(small, input);
    meshwa_response_printf(res, "copied %zu bytes into a 16-byte buffer: %.8s...\n", strlen(small), small);
}

__attribute__((noinline)) static void heap_overflow(meshwa_response *res) {
    char *block = malloc(16);
    char *neighbour = malloc(16);
    strcpy(neighbour, "neighbour");
    /* 64 KiB past a 16-byte block: over the allocator's metadata and whatever lies beyond. */
    memset(block, 'A', 64 * 1024);
    char *again = malloc(64);
    meshwa_response_printf(res, "neighbour now reads %.12s; malloc after the overflow returned %p\n", neighbour,
                           (void *)again);
}

__attribute__((noinline)) static void use_after_free(meshwa_response *res) {
    char *secret = malloc(32);
    strcpy(secret, "first owner");
    free(secret);
    char *other = malloc(32);
    strcpy(other, "second owner");
    /* Dangling write: lands in the second owner's block. */
    strcpy(secret, "dangling write");
    meshwa_response_printf(res, "second owner's block now reads %s\n", other);
}

__attribute__((noinline)) static void wild_write(meshwa_response *res) {
    /* Far beyond any linear memory this function may have (max-memory is far below 3 GiB). */
    volatile uint32_t *wild = (volatile uint32_t *)(uintptr_t)0xC0000000u;
    *wild = 0xdeadbeef;
    meshwa_response_printf(res, "the wild write went through\n");
}

__attribute__((noinline)) static void null_deref(meshwa_response *res) {
    volatile int *null = NULL;
    /* Address 0 is an ordinary address of linear memory in WebAssembly: no fault. */
    *null = 42;
    meshwa_response_printf(res, "wrote through NULL and read back %d\n", *null);
}

void meshwa_handle(const meshwa_request *req, meshwa_response *res) {
    requests_served++;
    meshwa_response_header(res, "content-type", "text/plain");
    const char *path = req->path;
    if (strcmp(path, "/unsafe/stack-overflow") == 0) {
        /* The body is the attacker's input; make it a C string. */
        char *input = calloc(1, req->body_len + 1);
        memcpy(input, req->body, req->body_len);
        stack_overflow(input, res);
        free(input);
    } else if (strcmp(path, "/unsafe/heap-overflow") == 0) {
        heap_overflow(res);
    } else if (strcmp(path, "/unsafe/use-after-free") == 0) {
        use_after_free(res);
    } else if (strcmp(path, "/unsafe/wild-write") == 0) {
        wild_write(res);
    } else if (strcmp(path, "/unsafe/null-deref") == 0) {
        null_deref(res);
    } else if (strcmp(path, "/unsafe/corrupt") == 0) {
        strcpy(marker, "overwritten");
        requests_served = 1000;
        meshwa_response_printf(res, "corrupted the globals\n");
    } else if (strcmp(path, "/unsafe/ok") == 0) {
        meshwa_response_printf(res, "ok\n");
    } else {
        meshwa_response_status(res, 404);
        meshwa_response_printf(res, "no such bug\n");
    }
    report(res);
}
