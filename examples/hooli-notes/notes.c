/*
 * hooli/notes: a tiny note board in C, on meshwa's key-value store.
 *
 *   GET  /hooli/notes          lists the notes (newest last) as text
 *   POST /hooli/notes          adds the request body as a note (at most 512 bytes)
 *   GET  /hooli/notes/count    how many notes were added so far
 *
 * The board's title comes from the manifest's [config].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshwa.h"

#define STORE "notes"
#define MAX_NOTE 512

static void list(meshwa_response *res) {
    char *title = meshwa_config_get("title");
    meshwa_response_printf(res, "%s\n", title ? title : "notes");
    free(title);
    meshwa_bytes count_bytes;
    uint64_t count = 0;
    if (meshwa_kv_get(STORE, "count", &count_bytes) == 1) {
        char text[32] = {0};
        memcpy(text, count_bytes.ptr, count_bytes.len < 31 ? count_bytes.len : 31);
        sscanf(text, "%llu", (unsigned long long *)&count);
        meshwa_bytes_free(&count_bytes);
    }
    for (uint64_t i = 1; i <= count; i++) {
        char key[32];
        snprintf(key, sizeof key, "note/%llu", (unsigned long long)i);
        meshwa_bytes note;
        if (meshwa_kv_get(STORE, key, &note) == 1) {
            meshwa_response_printf(res, "%llu: %.*s\n", (unsigned long long)i, (int)note.len, (const char *)note.ptr);
            meshwa_bytes_free(&note);
        }
    }
}

static void add(const meshwa_request *req, meshwa_response *res) {
    if (req->body_len == 0 || req->body_len > MAX_NOTE) {
        meshwa_response_status(res, 400);
        meshwa_response_printf(res, "a note is 1 to %d bytes\n", MAX_NOTE);
        return;
    }
    /* Taking the number first, atomically, keeps two notes posted at once from getting the
     * same number (a read, add and write of the counter would let one overwrite the other). The
     * store keeps the counter as decimal text, so it reads well with any key-value tool. */
    uint64_t count;
    if (meshwa_kv_increment(STORE, "count", 1, &count) < 0) goto failed;
    char key[32];
    snprintf(key, sizeof key, "note/%llu", (unsigned long long)count);
    if (meshwa_kv_set(STORE, key, req->body, req->body_len) < 0) goto failed;
    meshwa_log(MESHWA_LOG_INFO, "note %llu added (%zu bytes)", (unsigned long long)count, req->body_len);
    meshwa_response_status(res, 201);
    meshwa_response_printf(res, "note %llu\n", (unsigned long long)count);
    return;
failed:
    meshwa_response_status(res, 500);
    meshwa_response_printf(res, "key-value failed: %s\n", meshwa_last_error());
}

void meshwa_handle(const meshwa_request *req, meshwa_response *res) {
    meshwa_response_header(res, "content-type", "text/plain; charset=utf-8");
    const char *path = req->path;
    if (strcmp(path, "/hooli/notes/count") == 0) {
        meshwa_bytes count;
        if (meshwa_kv_get(STORE, "count", &count) == 1) {
            meshwa_response_write(res, count.ptr, count.len);
            meshwa_bytes_free(&count);
        } else {
            meshwa_response_write(res, "0", 1);
        }
        meshwa_response_write(res, "\n", 1);
    } else if (strcmp(req->method, "POST") == 0) {
        add(req, res);
    } else if (strcmp(req->method, "GET") == 0) {
        list(res);
    } else {
        meshwa_response_status(res, 405);
        meshwa_response_printf(res, "use GET or POST\n");
    }
}
