/*
 * meshwa.h: write a meshwa HTTP function in C (or C++).
 *
 * Implement one function:
 *
 *     void meshwa_handle(const meshwa_request *req, meshwa_response *res);
 *
 * and link with libmeshwa (see sdk/c/README.md and meshwa.mk). The request arrives with its whole
 * body in memory (at most the function's `limits.max-request-body`); the response is collected in
 * memory and sent when meshwa_handle returns.
 *
 * The services (key-value, config, logging, in-process calls) are thin wrappers over the bindings
 * that wit-bindgen generates from wit/ (sdk/c/generated/http_function.h); use those directly for
 * anything this header does not cover. A service works only if the function's manifest grants it
 * (`[functions.grants]`); a module that uses one without the grant is refused when it is deployed.
 * Only what your code calls ends up imported: the linker drops the rest.
 *
 * Strings passed in are NUL-terminated. Memory returned to you (meshwa_bytes, char *) is yours:
 * free it with meshwa_bytes_free / free. When a call fails, meshwa_last_error() says why.
 */
#ifndef MESHWA_H
#define MESHWA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An incoming request. Valid until meshwa_handle returns. */
typedef struct meshwa_request {
    const char *method;    /* "GET", "POST", ... */
    const char *path;      /* path and query, e.g. "/orders?id=7" */
    const uint8_t *body;   /* the whole request body (not NUL-terminated) */
    size_t body_len;
    /* Private: the request's headers. Use meshwa_request_header. */
    size_t header_count;
    const char *const *header_names;  /* lower case */
    const char *const *header_values;
} meshwa_request;

/* The response being built. Status 200 and no headers until you say otherwise. */
typedef struct meshwa_response meshwa_response;

/* Bytes owned by the caller; free with meshwa_bytes_free. */
typedef struct meshwa_bytes {
    uint8_t *ptr;
    size_t len;
} meshwa_bytes;

/* Implemented by the function. */
void meshwa_handle(const meshwa_request *req, meshwa_response *res);

/* The first value of header `name` (case-insensitive), or NULL. */
const char *meshwa_request_header(const meshwa_request *req, const char *name);

/* The value of query parameter `name` (not percent-decoded) copied into `out` (at most
 * `out_size` - 1 bytes, NUL-terminated). Returns its full length, or -1 if absent. */
long meshwa_query_param(const meshwa_request *req, const char *name, char *out, size_t out_size);

void meshwa_response_status(meshwa_response *res, uint16_t status);
/* Adds a header. Returns 0, or -1 if the name or value is not valid in HTTP. */
int meshwa_response_header(meshwa_response *res, const char *name, const char *value);
/* Appends bytes to the body. Returns 0, or -1 if out of memory. */
int meshwa_response_write(meshwa_response *res, const void *data, size_t len);
/* Appends formatted text to the body. Returns 0, or -1 if out of memory. */
int meshwa_response_printf(meshwa_response *res, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Key-value (grants.key-value). Stores are the manifest's `[key-value.<store>]`. */
/* 1 and the value in `out` if the key exists, 0 if not, -1 on error. */
int meshwa_kv_get(const char *store, const char *key, meshwa_bytes *out);
/* 0, or -1 on error (e.g. a quota: see meshwa_last_error). */
int meshwa_kv_set(const char *store, const char *key, const void *value, size_t len);
/* Adds `delta` to the counter at `key` (created at 0); 0 and the new value in `out`, or -1. */
int meshwa_kv_increment(const char *store, const char *key, uint64_t delta, uint64_t *out);

/* Config (grants.config): a newly allocated copy of the value of `key`, or NULL if it has none
 * (or on error, with meshwa_last_error set). */
char *meshwa_config_get(const char *key);

/* Logging (grants.logging). */
typedef enum meshwa_log_level {
    MESHWA_LOG_TRACE,
    MESHWA_LOG_DEBUG,
    MESHWA_LOG_INFO,
    MESHWA_LOG_WARN,
    MESHWA_LOG_ERROR,
    MESHWA_LOG_CRITICAL
} meshwa_log_level;
void meshwa_log(meshwa_log_level level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* In-process call to another function of the tenant: `function` is "name" (same app) or
 * "app/name"; the payload is POSTed to `path`. Returns 0 with the callee's status and body,
 * or -1 (why: meshwa_last_error, e.g. "not-found", "depth-exceeded", "trapped: ..."). The payload
 * is copied once into a host-owned buffer; the callee reads it from there. */
int meshwa_invoke(const char *function, const char *path, const void *payload, size_t len,
                  uint16_t *status, meshwa_bytes *body);

void meshwa_bytes_free(meshwa_bytes *bytes);

/* Why the last failed call failed (a static string, valid until the next call). */
const char *meshwa_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MESHWA_H */
