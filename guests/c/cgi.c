/*
 * c-cgi: a plain command-line program, unchanged C with main(), served CGI-style.
 * Reads stdin to EOF and counts lines, words and bytes like wc(1); echoes a few CGI variables.
 * QUERY_STRING selects misbehaviour for the tests:
 *   mode=bad     prints no CGI header block
 *   mode=exit3   exits with status 3 without printing anything
 *   mode=big     streams 4 MiB of body
 *   mode=status  answers 404 with a custom header
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

int main(int argc, char **argv) {
    const char *query = env("QUERY_STRING");
    if (strstr(query, "mode=bad")) {
        printf("this is not a header\n\nbody\n");
        return 0;
    }
    if (strstr(query, "mode=exit3")) {
        return 3;
    }
    if (strstr(query, "mode=status")) {
        printf("Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-Cgi: yes\r\n\r\nnothing here\n");
        return 0;
    }
    if (strstr(query, "mode=big")) {
        printf("Content-Type: application/octet-stream\n\n");
        static char line[1024];
        memset(line, 'x', sizeof line - 1);
        line[sizeof line - 1] = '\n';
        for (int i = 0; i < 4096; i++) fwrite(line, 1, sizeof line, stdout);
        return 0;
    }
    long lines = 0, words = 0, bytes = 0;
    int in_word = 0, c;
    while ((c = getchar()) != EOF) {
        bytes++;
        if (c == '\n') lines++;
        if (isspace(c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    printf("Content-Type: text/plain\n");
    printf("X-Program: %s\n", argc > 0 ? argv[0] : "?");
    printf("\n");
    printf("%ld %ld %ld\n", lines, words, bytes);
    printf("method=%s script=%s path_info=%s query=%s length=%s type=%s\n", env("REQUEST_METHOD"),
           env("SCRIPT_NAME"), env("PATH_INFO"), query, env("CONTENT_LENGTH"), env("CONTENT_TYPE"));
    return 0;
}
