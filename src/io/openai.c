/* openai.c - chat completions over libcurl with retries; see openai.h. */
#include "io/openai.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/rng.h"
#include "core/strbuf.h"
#include "core/util.h"

#define MAX_REPLY (64u << 20) /* a judge's reply is text: refuse a runaway body */

int rmu_oai_init(rmu_oai_client *c, const char *base_url, const char *api_key, rmu_err *e) {
    memset(c, 0, sizeof *c);
    if (!base_url || (strncasecmp(base_url, "http://", 7) && strncasecmp(base_url, "https://", 8)))
        return rmu_errf(e, "judge_url: expected an http:// or https:// URL, got '%s'", base_url ? base_url : "");
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/') n--;
    int full = n >= 17 && !strncmp(base_url + n - 17, "/chat/completions", 17);
    if ((size_t)snprintf(c->url, sizeof c->url, "%.*s%s", (int)n, base_url, full ? "" : "/chat/completions") >=
        sizeof c->url)
        return rmu_errf(e, "judge_url: too long");
    if (api_key && *api_key) {
        rmu_sb b = {0};
        rmu_sb_printf(&b, "Authorization: Bearer %s", api_key);
        if (!(c->auth = rmu_sb_take(&b))) return rmu_errf(e, "out of memory");
    }
    if (!(c->curl = curl_easy_init())) {
        free(c->auth);
        return rmu_errf(e, "cannot initialise libcurl");
    }
    c->timeout_s = 300;
    c->max_retries = 8;
    c->backoff_s = 2;
    c->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
    return 0;
}

void rmu_oai_free(rmu_oai_client *c) {
    if (c->curl) curl_easy_cleanup(c->curl);
    free(c->auth);
    memset(c, 0, sizeof *c);
}

typedef struct {
    rmu_sb body;
    double retry_after;
} response;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    response *r = ud;
    size_t k = size * n;
    if (r->body.n + k > MAX_REPLY || rmu_sb_add(&r->body, p, k)) return 0; /* aborts the transfer */
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    response *r = ud;
    size_t k = size * n;
    if (k > 12 && !strncasecmp(p, "Retry-After:", 12)) r->retry_after = strtod(p + 12, NULL);
    return k;
}

/* The server's error message from an OpenAI-shaped error body, or the body's start. */
static void server_message(const char *body, char *out, size_t cap) {
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    json_t *m = json_object_get(json_object_get(j, "error"), "message");
    if (json_is_string(m)) snprintf(out, cap, "%s", json_string_value(m));
    else snprintf(out, cap, "%.200s", body && *body ? body : "(empty body)");
    json_decref(j);
}

/* Sleeps s seconds in small steps so a cancel is seen promptly. */
static void nap(const rmu_oai_client *c, double s) {
    double end = rmu_now_s() + s;
    while (!(c->cancel && *c->cancel)) {
        double left = end - rmu_now_s();
        if (left <= 0) break;
        struct timespec ts = {0, (long)((left < 0.1 ? left : 0.1) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

char *rmu_oai_chat(rmu_oai_client *c, const char *model, const char *system, const char *user, double temperature,
                   int max_tokens, int *permanent, rmu_err *e) {
    int perm_dummy;
    if (!permanent) permanent = &perm_dummy;
    *permanent = 1;
    json_t *msgs = json_array();
    if (system && *system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", user));
    json_t *req = json_pack("{s:s,s:o,s:i,s:f,s:i}", "model", model, "messages", msgs, "n", 1, "temperature",
                            temperature, "max_tokens", max_tokens);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) return rmu_errf(e, "out of memory (or text that is not UTF-8) building the request"), NULL;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->auth) hdr = curl_slist_append(hdr, c->auth);
    char *reply = NULL;
    double delay = c->backoff_s;
    for (int attempt = 0;; attempt++) {
        response r = {{0}, -1};
        CURL *h = c->curl;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, c->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        char msg[400];
        int retry = 0;
        if (cc != CURLE_OK) {
            snprintf(msg, sizeof msg, "%s: %s", c->url, curl_easy_strerror(cc));
            retry = cc != CURLE_UNSUPPORTED_PROTOCOL && cc != CURLE_URL_MALFORMAT && cc != CURLE_WRITE_ERROR;
        } else if (status == 200) {
            json_t *j = r.body.p ? json_loads(r.body.p, 0, NULL) : NULL;
            json_t *m = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"),
                                        "content");
            if (json_is_string(m)) reply = strdup(json_string_value(m));
            json_decref(j);
            if (reply) {
                rmu_sb_free(&r.body);
                break;
            }
            snprintf(msg, sizeof msg, "%s: a 200 reply that is not a chat completion: %.120s", c->url,
                     r.body.p ? r.body.p : "(empty)");
            retry = 1;
        } else {
            char sm[300];
            server_message(r.body.p, sm, sizeof sm);
            const char *hint = status == 401 || status == 403 ? " (check the API key)"
                               : status == 404            ? " (check the judge URL and model name)"
                                                          : "";
            snprintf(msg, sizeof msg, "%s: HTTP %ld: %s%s", c->url, status, sm, hint);
            retry = status == 408 || status == 429 || status >= 500;
        }
        rmu_sb_free(&r.body);
        if (!retry || attempt >= c->max_retries || (c->cancel && *c->cancel)) {
            *permanent = !retry;
            rmu_errf(e, "%s%s", msg, retry ? " (giving up after retries)" : "");
            break;
        }
        double wait = r.retry_after >= 0 ? r.retry_after : delay * (0.75 + 0.5 * rmu_rng_uniform(&c->rng));
        nap(c, wait < 600 ? wait : 600);
        delay = delay * 2 < 60 ? delay * 2 : 60;
    }
    curl_slist_free_all(hdr);
    free(body);
    return reply;
}
