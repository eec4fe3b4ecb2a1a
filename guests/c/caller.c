/*
 * c-caller: an in-process call from C. `/call?fn=NAME` POSTs the request body to function NAME
 * of the same app (or "app/name") at path /from-c, with meshwa_invoke, and answers
 * "status N: <callee's body>" or "error: <why>".
 */
#include <string.h>

#include "meshwa.h"

void meshwa_handle(const meshwa_request *req, meshwa_response *res) {
    meshwa_response_header(res, "content-type", "text/plain");
    char function[64];
    if (meshwa_query_param(req, "fn", function, sizeof function) < 0) {
        meshwa_response_status(res, 400);
        meshwa_response_printf(res, "say which function: ?fn=NAME\n");
        return;
    }
    uint16_t status;
    meshwa_bytes body;
    if (meshwa_invoke(function, "/from-c", req->body, req->body_len, &status, &body) < 0) {
        meshwa_response_status(res, 502);
        meshwa_response_printf(res, "error: %s\n", meshwa_last_error());
        return;
    }
    meshwa_response_printf(res, "status %u: ", status);
    meshwa_response_write(res, body.ptr, body.len);
    meshwa_bytes_free(&body);
}
