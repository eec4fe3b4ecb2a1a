/*
 * libmeshwa: the request/response plumbing and service wrappers of meshwa.h, over the bindings
 * wit-bindgen generated from wit/ (../generated/http_function.h). Nothing here talks to the host
 * except through those bindings.
 */
#include "meshwa.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_function.h"

/* wasi:io output streams take at most 4096 bytes per blocking write. */
#define WRITE_CHUNK 4096
#define READ_CHUNK 65536

static char last_error[256];

static void set_error(const char *what, const uint8_t *detail, size_t detail_len) {
    if (detail != NULL) {
        snprintf(last_error, sizeof last_error, "%s: %.*s", what, (int)detail_len, (const char *)detail);
    } else {
        snprintf(last_error, sizeof last_error, "%s", what);
    }
}

const char *meshwa_last_error(void) { return last_error; }

void meshwa_bytes_free(meshwa_bytes *bytes) {
    if (bytes != NULL) {
        free(bytes->ptr);
        bytes->ptr = NULL;
        bytes->len = 0;
    }
}

/* A NUL-terminated copy of `len` bytes, or NULL if out of memory. */
static char *copy_string(const uint8_t *ptr, size_t len) {
    char *copy = malloc(len + 1);
    if (copy != NULL) {
        if (len > 0) memcpy(copy, ptr, len);
        copy[len] = '\0';
    }
    return copy;
}

/* ---- the response ---- */

struct meshwa_response {
    uint16_t status;
    wasi_http_types_own_fields_t headers;
    bool headers_invalid;
    uint8_t *body;
    size_t len;
    size_t capacity;
};

void meshwa_response_status(meshwa_response *res, uint16_t status) { res->status = status; }

int meshwa_response_header(meshwa_response *res, const char *name, const char *value) {
    wasi_http_types_field_name_t field_name;
    http_function_string_set(&field_name, name);
    wasi_http_types_field_value_t field_value = {(uint8_t *)value, strlen(value)};
    wasi_http_types_header_error_t error;
    if (!wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(res->headers), &field_name,
                                              &field_value, &error)) {
        set_error("invalid response header", (const uint8_t *)name, strlen(name));
        return -1;
    }
    return 0;
}

int meshwa_response_write(meshwa_response *res, const void *data, size_t len) {
    if (len > res->capacity - res->len) {
        size_t capacity = res->capacity ? res->capacity : 1024;
        while (capacity - res->len < len) {
            if (capacity > SIZE_MAX / 2) return -1;
            capacity *= 2;
        }
        uint8_t *grown = realloc(res->body, capacity);
        if (grown == NULL) {
            set_error("out of memory", NULL, 0);
            return -1;
        }
        res->body = grown;
        res->capacity = capacity;
    }
    if (len > 0) memcpy(res->body + res->len, data, len);
    res->len += len;
    return 0;
}

int meshwa_response_printf(meshwa_response *res, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int needed = vsnprintf(NULL, 0, format, args);
    va_end(args);
    if (needed < 0) return -1;
    char *text = malloc((size_t)needed + 1);
    if (text == NULL) return -1;
    va_start(args, format);
    vsnprintf(text, (size_t)needed + 1, format, args);
    va_end(args);
    int result = meshwa_response_write(res, text, (size_t)needed);
    free(text);
    return result;
}

/* ---- the request ---- */

const char *meshwa_request_header(const meshwa_request *req, const char *name) {
    for (size_t i = 0; i < req->header_count; i++) {
        if (strcasecmp(req->header_names[i], name) == 0) return req->header_values[i];
    }
    return NULL;
}

long meshwa_query_param(const meshwa_request *req, const char *name, char *out, size_t out_size) {
    const char *query = strchr(req->path, '?');
    size_t name_len = strlen(name);
    while (query != NULL) {
        query++;
        const char *end = strchr(query, '&');
        size_t pair_len = end ? (size_t)(end - query) : strlen(query);
        if (pair_len > name_len && strncmp(query, name, name_len) == 0 && query[name_len] == '=') {
            const char *value = query + name_len + 1;
            size_t value_len = pair_len - name_len - 1;
            if (out_size > 0) {
                size_t n = value_len < out_size - 1 ? value_len : out_size - 1;
                memcpy(out, value, n);
                out[n] = '\0';
            }
            return (long)value_len;
        }
        query = end;
    }
    return -1;
}

static const char *method_name(wasi_http_types_method_t *method) {
    static const char *const names[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (method->tag < sizeof names / sizeof names[0]) return names[method->tag];
    return NULL;
}

/* Reads the whole body stream; false if the client's body failed (or out of memory). */
static bool read_body(wasi_http_types_own_incoming_body_t body, uint8_t **out, size_t *out_len) {
    wasi_http_types_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &stream)) {
        return false;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    bool ok = true;
    for (;;) {
        http_function_list_u8_t chunk;
        wasi_io_streams_stream_error_t error;
        if (!wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(stream),
                                                               READ_CHUNK, &chunk, &error)) {
            ok = error.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
            wasi_io_streams_stream_error_free(&error);
            break;
        }
        if (chunk.len > 0) {
            uint8_t *grown = realloc(data, len + chunk.len);
            if (grown == NULL) {
                http_function_list_u8_free(&chunk);
                ok = false;
                break;
            }
            data = grown;
            memcpy(data + len, chunk.ptr, chunk.len);
            len += chunk.len;
        }
        http_function_list_u8_free(&chunk);
    }
    wasi_io_streams_input_stream_drop_own(stream);
    *out = data;
    *out_len = len;
    return ok;
}

static void send_error(wasi_http_types_own_response_outparam_t out) {
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    result.is_err = true;
    result.val.err.tag = WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR;
    result.val.err.val.internal_error.is_some = false;
    wasi_http_types_static_response_outparam_set(out, &result);
}

static void send(meshwa_response *res, wasi_http_types_own_response_outparam_t out) {
    wasi_http_types_own_outgoing_response_t response =
        wasi_http_types_constructor_outgoing_response(res->headers);
    wasi_http_types_borrow_outgoing_response_t borrowed = wasi_http_types_borrow_outgoing_response(response);
    if (!wasi_http_types_method_outgoing_response_set_status_code(borrowed, res->status)) {
        wasi_http_types_method_outgoing_response_set_status_code(borrowed, 500);
    }
    wasi_http_types_own_outgoing_body_t body;
    if (!wasi_http_types_method_outgoing_response_body(borrowed, &body)) {
        wasi_http_types_outgoing_response_drop_own(response);
        send_error(out);
        return;
    }
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    result.is_err = false;
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(out, &result);

    wasi_http_types_own_output_stream_t stream;
    if (!wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
        wasi_http_types_outgoing_body_drop_own(body);
        return;
    }
    bool complete = true;
    for (size_t offset = 0; offset < res->len;) {
        size_t n = res->len - offset < WRITE_CHUNK ? res->len - offset : WRITE_CHUNK;
        http_function_list_u8_t chunk = {res->body + offset, n};
        wasi_io_streams_stream_error_t error;
        if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                wasi_io_streams_borrow_output_stream(stream), &chunk, &error)) {
            /* The client went away. */
            wasi_io_streams_stream_error_free(&error);
            complete = false;
            break;
        }
        offset += n;
    }
    wasi_io_streams_output_stream_drop_own(stream);
    if (complete) {
        wasi_http_types_error_code_t error;
        if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &error)) {
            wasi_http_types_error_code_free(&error);
        }
    } else {
        wasi_http_types_outgoing_body_drop_own(body);
    }
}

void exports_wasi_http_incoming_handler_handle(wasi_http_types_own_incoming_request_t request,
                                               wasi_http_types_own_response_outparam_t response_out) {
    wasi_http_types_borrow_incoming_request_t borrowed = wasi_http_types_borrow_incoming_request(request);

    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(borrowed, &method);
    const char *known = method_name(&method);
    char *method_text = known ? copy_string((const uint8_t *)known, strlen(known))
                              : copy_string(method.val.other.ptr, method.val.other.len);
    wasi_http_types_method_free(&method);

    http_function_string_t path_with_query;
    char *path;
    if (wasi_http_types_method_incoming_request_path_with_query(borrowed, &path_with_query)) {
        path = copy_string(path_with_query.ptr, path_with_query.len);
        http_function_string_free(&path_with_query);
    } else {
        path = copy_string((const uint8_t *)"/", 1);
    }

    http_function_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_own_headers_t headers = wasi_http_types_method_incoming_request_headers(borrowed);
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(headers), &entries);
    wasi_http_types_fields_drop_own(headers);
    char **names = calloc(entries.len ? entries.len : 1, sizeof(char *));
    char **values = calloc(entries.len ? entries.len : 1, sizeof(char *));
    bool ok = method_text != NULL && path != NULL && names != NULL && values != NULL;
    for (size_t i = 0; ok && i < entries.len; i++) {
        names[i] = copy_string(entries.ptr[i].f0.ptr, entries.ptr[i].f0.len);
        values[i] = copy_string(entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
        ok = names[i] != NULL && values[i] != NULL;
    }
    size_t header_count = entries.len;
    http_function_list_tuple2_field_name_field_value_free(&entries);

    uint8_t *body = NULL;
    size_t body_len = 0;
    wasi_http_types_own_incoming_body_t incoming_body;
    if (ok && wasi_http_types_method_incoming_request_consume(borrowed, &incoming_body)) {
        ok = read_body(incoming_body, &body, &body_len);
        wasi_http_types_incoming_body_drop_own(incoming_body);
    }
    wasi_http_types_incoming_request_drop_own(request);

    if (ok) {
        meshwa_request req = {
            .method = method_text,
            .path = path,
            .body = body != NULL ? body : (const uint8_t *)"",
            .body_len = body_len,
            .header_count = header_count,
            .header_names = (const char *const *)names,
            .header_values = (const char *const *)values,
        };
        meshwa_response res = {.status = 200, .headers = wasi_http_types_constructor_fields()};
        meshwa_handle(&req, &res);
        send(&res, response_out);
        free(res.body);
    } else {
        send_error(response_out);
    }

    for (size_t i = 0; names != NULL && values != NULL && i < header_count; i++) {
        free(names[i]);
        free(values[i]);
    }
    free(names);
    free(values);
    free(body);
    free(path);
    free(method_text);
}

/* ---- key-value ---- */

static void set_kv_error(wasi_keyvalue_store_error_t *error) {
    switch (error->tag) {
    case WASI_KEYVALUE_STORE_ERROR_NO_SUCH_STORE:
        set_error("no such store", NULL, 0);
        break;
    case WASI_KEYVALUE_STORE_ERROR_ACCESS_DENIED:
        set_error("access denied", NULL, 0);
        break;
    default:
        set_error("key-value", error->val.other.ptr, error->val.other.len);
    }
    wasi_keyvalue_store_error_free(error);
}

static bool open_store(const char *store, wasi_keyvalue_store_own_bucket_t *bucket) {
    http_function_string_t name;
    http_function_string_set(&name, store);
    wasi_keyvalue_store_error_t error;
    if (!wasi_keyvalue_store_open(&name, bucket, &error)) {
        set_kv_error(&error);
        return false;
    }
    return true;
}

int meshwa_kv_get(const char *store, const char *key, meshwa_bytes *out) {
    wasi_keyvalue_store_own_bucket_t bucket;
    if (!open_store(store, &bucket)) return -1;
    http_function_string_t key_string;
    http_function_string_set(&key_string, key);
    http_function_option_list_u8_t value;
    wasi_keyvalue_store_error_t error;
    int result;
    if (!wasi_keyvalue_store_method_bucket_get(wasi_keyvalue_store_borrow_bucket(bucket), &key_string, &value,
                                               &error)) {
        set_kv_error(&error);
        result = -1;
    } else if (value.is_some) {
        /* The bytes were allocated with malloc (cabi_realloc): hand them over as they are. */
        out->ptr = value.val.ptr;
        out->len = value.val.len;
        result = 1;
    } else {
        out->ptr = NULL;
        out->len = 0;
        result = 0;
    }
    wasi_keyvalue_store_bucket_drop_own(bucket);
    return result;
}

int meshwa_kv_set(const char *store, const char *key, const void *value, size_t len) {
    wasi_keyvalue_store_own_bucket_t bucket;
    if (!open_store(store, &bucket)) return -1;
    http_function_string_t key_string;
    http_function_string_set(&key_string, key);
    http_function_list_u8_t bytes = {(uint8_t *)value, len};
    wasi_keyvalue_store_error_t error;
    int result = 0;
    if (!wasi_keyvalue_store_method_bucket_set(wasi_keyvalue_store_borrow_bucket(bucket), &key_string, &bytes,
                                               &error)) {
        set_kv_error(&error);
        result = -1;
    }
    wasi_keyvalue_store_bucket_drop_own(bucket);
    return result;
}

int meshwa_kv_increment(const char *store, const char *key, uint64_t delta, uint64_t *out) {
    wasi_keyvalue_store_own_bucket_t bucket;
    if (!open_store(store, &bucket)) return -1;
    http_function_string_t key_string;
    http_function_string_set(&key_string, key);
    wasi_keyvalue_atomics_error_t error;
    int result = 0;
    if (!wasi_keyvalue_atomics_increment(wasi_keyvalue_store_borrow_bucket(bucket), &key_string, delta, out,
                                         &error)) {
        set_kv_error(&error);
        result = -1;
    }
    wasi_keyvalue_store_bucket_drop_own(bucket);
    return result;
}

/* ---- config ---- */

char *meshwa_config_get(const char *key) {
    http_function_string_t key_string;
    http_function_string_set(&key_string, key);
    http_function_option_string_t value;
    wasi_config_store_error_t error;
    if (!wasi_config_store_get(&key_string, &value, &error)) {
        const http_function_string_t *detail =
            error.tag == WASI_CONFIG_STORE_ERROR_UPSTREAM ? &error.val.upstream : &error.val.io;
        set_error("config", detail->ptr, detail->len);
        wasi_config_store_error_free(&error);
        return NULL;
    }
    if (!value.is_some) {
        set_error("no such config key", (const uint8_t *)key, strlen(key));
        return NULL;
    }
    char *copy = copy_string(value.val.ptr, value.val.len);
    http_function_option_string_free(&value);
    return copy;
}

/* ---- logging ---- */

void meshwa_log(meshwa_log_level level, const char *format, ...) {
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    http_function_string_t context = {NULL, 0};
    http_function_string_t message;
    http_function_string_set(&message, line);
    wasi_logging_logging_log((wasi_logging_logging_level_t)level, &context, &message);
}

/* ---- in-process calls ---- */

int meshwa_invoke(const char *function, const char *path, const void *payload, size_t len,
                  uint16_t *status, meshwa_bytes *body) {
    http_function_list_u8_t bytes = {(uint8_t *)payload, len};
    meshwa_platform_buffers_own_buffer_t buffer = meshwa_platform_buffers_constructor_buffer(&bytes);
    http_function_string_t function_name, path_string;
    http_function_string_set(&function_name, function);
    http_function_string_set(&path_string, path);
    http_function_list_tuple2_string_string_t headers = {NULL, 0};
    meshwa_platform_invoke_response_t response;
    meshwa_platform_invoke_invoke_error_t error;
    /* The buffer moves to the callee. */
    if (!meshwa_platform_invoke_call(&function_name, &path_string, buffer, &headers, &response, &error)) {
        switch (error.tag) {
        case MESHWA_PLATFORM_INVOKE_INVOKE_ERROR_NOT_FOUND:
            set_error("not-found", NULL, 0);
            break;
        case MESHWA_PLATFORM_INVOKE_INVOKE_ERROR_NOT_ALLOWED:
            set_error("not-allowed", NULL, 0);
            break;
        case MESHWA_PLATFORM_INVOKE_INVOKE_ERROR_TRAPPED:
            set_error("trapped", error.val.trapped.ptr, error.val.trapped.len);
            break;
        case MESHWA_PLATFORM_INVOKE_INVOKE_ERROR_TIMED_OUT:
            set_error("timed-out", NULL, 0);
            break;
        case MESHWA_PLATFORM_INVOKE_INVOKE_ERROR_LIMIT_EXCEEDED:
            set_error("limit-exceeded", error.val.limit_exceeded.ptr, error.val.limit_exceeded.len);
            break;
        case MESHWA_PLATFORM_INVOKE_INVOKE_ERROR_DEPTH_EXCEEDED:
            set_error("depth-exceeded", NULL, 0);
            break;
        default:
            set_error("failed", error.val.failed.ptr, error.val.failed.len);
        }
        meshwa_platform_invoke_invoke_error_free(&error);
        return -1;
    }
    meshwa_platform_buffers_borrow_buffer_t answer = meshwa_platform_buffers_borrow_buffer(response.body);
    uint64_t answer_len = meshwa_platform_buffers_method_buffer_len(answer);
    http_function_list_u8_t read;
    meshwa_platform_buffers_method_buffer_read(answer, 0, answer_len, &read);
    meshwa_platform_buffers_buffer_drop_own(response.body);
    *status = response.status;
    body->ptr = read.ptr;
    body->len = read.len;
    return 0;
}
