/* test_serve_api.c - the OpenAI request/response layer of `rmu serve` (src/serve/api.c):
 * defaults, every accepted form of a field, errors naming the field (OpenAI `param`),
 * context checks, engine parameters, and the JSON of responses and stream chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "serve/api.h"
#include "tokenizer/bpe_train.h"

static rmu_tokenizer *g_tok;

static int setup(void **state) {
    if (tu_setup_tmp(state)) return -1;
    rmu_err e;
    const char *corpus = "hello world the cat sat on the mat and the dog ran to the sun";
    if (rmu_bpe_write_synthetic(*state, 300, corpus, strlen(corpus), &e) || !(g_tok = rmu_tok_load(*state, &e))) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    rmu_tok_free(g_tok);
    return tu_teardown_tmp(state);
}

static int parse(rmu_api_req *r, rmu_api_kind k, const char *body, rmu_api_err *err) {
    return rmu_api_parse(r, k, body, strlen(body), err);
}

/* body must fail with status 400 and the given param ("" for none) and message part. */
static void bad(rmu_api_kind k, const char *body, const char *param, const char *msg_part) {
    rmu_api_req r;
    rmu_api_err err;
    int rc = parse(&r, k, body, &err);
    if (!rc) rc = rmu_api_encode(&r, g_tok, RMU_CHAT_ZEPHYR, 300, 64, &err);
    rmu_api_req_free(&r);
    if (!rc) fail_msg("accepted: %s", body);
    if (err.status != 400 || strcmp(err.param, param) || !strstr(err.message, msg_part))
        fail_msg("%s: status %d, param '%s', message '%s'", body, err.status, err.param, err.message);
}

static void test_chat_defaults_and_forms(void **state) {
    (void)state;
    rmu_api_req r;
    rmu_api_err err;
    assert_int_equal(parse(&r, RMU_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"developer\", \"content\": \"S\"},"
                                             "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
                                             "{\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": null}]}",
                           &err), 0);
    assert_int_equal(r.nmsgs, 3);
    assert_string_equal(r.msgs[0].role, "system"); /* developer is OpenAI's newer name */
    assert_string_equal(r.msgs[1].content, "a\nb");
    assert_string_equal(r.msgs[2].content, "");
    assert_int_equal(r.max_tokens, -1);
    assert_int_equal(r.n, 1);
    assert_true(r.temperature == 1.0 && r.top_p == 1.0 && r.top_k == 0 && !r.stream && !r.logprobs);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_ZEPHYR, 300, 64, &err), 0);
    assert_non_null(strstr(r.rendered, "<|system|>\nS</s>\n<|user|>\na\nb</s>\n"));
    assert_int_equal(r.nprompts, 1);
    assert_int_equal(r.prompts[0].max_new, 64 - r.prompts[0].n); /* chat: the rest of the context */
    rmu_eng_params p;
    rmu_api_seq_params(&r, 0, 0, 99, &p);
    assert_int_equal(p.n_prompt, r.prompts[0].n);
    assert_int_equal(p.smp.seed, 99);
    assert_int_equal(p.continuation, 0);
    assert_int_equal(p.same_prompt_as, -1);
    rmu_api_req_free(&r);

    assert_int_equal(parse(&r, RMU_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_completion_tokens\": 5,"
                                             "\"temperature\": 0, \"top_p\": 0.5, \"top_k\": -1, \"seed\": 7, \"n\": 3, \"stop\": \"x\","
                                             "\"logprobs\": true, \"top_logprobs\": 4, \"presence_penalty\": -2, \"frequency_penalty\": 2,"
                                             "\"stream\": true, \"stream_options\": {\"include_usage\": true}, \"tools\": [],"
                                             "\"tool_choice\": \"none\", \"response_format\": {\"type\": \"text\"}, \"user\": \"u\"}",
                           &err), 0);
    assert_true(r.max_tokens == 5 && r.temperature == 0 && r.top_p == 0.5 && r.top_k == 0 && r.has_seed && r.seed == 7);
    assert_true(r.n == 3 && r.nstops == 1 && !strcmp(r.stops[0], "x") && r.logprobs && r.top_logprobs == 4);
    assert_true(r.presence_penalty == -2 && r.frequency_penalty == 2 && r.stream && r.include_usage);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    rmu_api_seq_params(&r, 0, 2, 99, &p);
    assert_int_equal(p.smp.seed, 9); /* choices differ: seed + j */
    assert_int_equal(p.same_prompt_as, 0);
    assert_int_equal(p.max_new, 5);
    assert_true(p.logprobs && p.top == 4 && !p.prompt_logprobs && p.nstops == 1);
    rmu_api_req_free(&r);
}

static void test_completion_prompt_forms(void **state) {
    (void)state;
    rmu_api_req r;
    rmu_api_err err;
    assert_int_equal(parse(&r, RMU_API_COMPLETIONS, "{\"prompt\": \"the cat\"}", &err), 0);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    assert_int_equal(r.prompts[0].ids[0], rmu_tok_bos_id(g_tok));
    assert_int_equal(r.prompts[0].max_new, 16); /* OpenAI's default for completions */
    rmu_api_req_free(&r);
    assert_int_equal(parse(&r, RMU_API_COMPLETIONS, "{\"prompt\": [\"a\", \"b c\"], \"n\": 2, \"echo\": true, \"logprobs\": 0}", &err), 0);
    assert_int_equal(r.nprompts, 2);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    rmu_eng_params p;
    rmu_api_seq_params(&r, 1, 1, 5, &p);
    assert_true(p.logprobs && p.top == 0 && p.prompt_logprobs && p.continuation && p.same_prompt_as == 2);
    rmu_api_req_free(&r);
    assert_int_equal(parse(&r, RMU_API_COMPLETIONS, "{\"prompt\": [5, 6.0, 7], \"max_tokens\": 0}", &err), 0);
    assert_int_equal(r.nprompts, 1);
    assert_int_equal(r.prompts[0].n, 3);
    assert_int_equal(r.prompts[0].ids[1], 6);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 3, &err), 0); /* 3 + 0 fits 3 */
    assert_int_equal(r.prompts[0].max_new, 0);
    rmu_api_req_free(&r);
    assert_int_equal(parse(&r, RMU_API_COMPLETIONS, "{\"prompt\": [[1, 2], [3]]}", &err), 0);
    assert_int_equal(r.nprompts, 2);
    assert_int_equal(r.prompts[1].ids[0], 3);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 10, &err), 0);
    assert_int_equal(r.prompts[0].max_new, 8); /* 16 clipped to the context */
    rmu_api_req_free(&r);
}

static void test_errors_name_fields(void **state) {
    (void)state;
    const rmu_api_kind C = RMU_API_CHAT, P = RMU_API_COMPLETIONS;
    bad(C, "{\"messages\": [", "", "not valid JSON");
    bad(C, "[]", "", "must be a JSON object");
    bad(C, "{\"a\": 1, \"a\": 2}", "", "duplicate");
    bad(C, "{}", "messages", "required");
    bad(C, "{\"messages\": {}}", "messages", "expected an array, got an object");
    bad(C, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", \"content\": \"b\"}]}",
        "messages[1].role", "unknown role 'robot'");
    bad(C, "{\"messages\": [{\"content\": \"a\"}]}", "messages[0].role", "required");
    bad(C, "{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content", "required");
    bad(C, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}]}", "messages[0].content", "NUL");
    bad(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "messages[0].content[0]", "only");
    const char *m = "\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]";
    char b[512];
#define BAD(extra, param, part)                                 \
    do {                                                        \
        snprintf(b, sizeof b, "{%s, %s}", m, extra);            \
        bad(C, b, param, part);                                 \
    } while (0)
    BAD("\"temperature\": \"hot\"", "temperature", "expected a number, got a string");
    BAD("\"temperature\": -0.1", "temperature", "must be in [0, 2]");
    BAD("\"top_p\": 0", "top_p", "must be in (0, 1]");
    BAD("\"top_k\": -2", "top_k", "must be in [-1,");
    BAD("\"n\": 17", "n", "must be in [1, 16]");
    BAD("\"max_tokens\": 0", "max_tokens", "must be in [1,");
    BAD("\"max_tokens\": 2.5", "max_tokens", "expected an integer");
    BAD("\"seed\": 1.5", "seed", "expected an integer");
    BAD("\"seed\": \"1\"", "seed", "expected an integer");
    BAD("\"stream\": 1", "stream", "expected a boolean");
    BAD("\"stream_options\": 1", "stream_options", "expected an object");
    BAD("\"stream_options\": {\"include_usage\": 1}", "stream_options.include_usage", "expected a boolean");
    BAD("\"stop\": 5", "stop", "a string or an array of strings");
    BAD("\"stop\": [\"a\", \"\"]", "stop[1]", "empty stop string");
    BAD("\"logprobs\": 2", "logprobs", "expected a boolean");
    BAD("\"top_logprobs\": 21", "top_logprobs", "must be in [0, 20]");
    BAD("\"top_logprobs\": 2", "top_logprobs", "needs logprobs");
    BAD("\"presence_penalty\": 2.5", "presence_penalty", "must be in [-2, 2]");
    BAD("\"tools\": [{\"type\": \"function\"}]", "tools", "not supported");
    BAD("\"model\": 5", "model", "expected a string");
    BAD("\"max_tokens\": 60", "messages", "maximum context length is 64 tokens");
#undef BAD
    bad(P, "{}", "prompt", "required");
    bad(P, "{\"prompt\": []}", "prompt", "must not be empty");
    bad(P, "{\"prompt\": [1, \"a\"]}", "prompt[1]", "expected an integer");
    bad(P, "{\"prompt\": [[1], 2]}", "prompt[1]", "expected an array of token ids");
    bad(P, "{\"prompt\": [[]]}", "prompt[0]", "must not be empty");
    bad(P, "{\"prompt\": [300]}", "prompt", "outside the vocabulary of 300");
    bad(P, "{\"prompt\": [-1]}", "prompt[0]", "must be in [0,");
    bad(P, "{\"prompt\": \"a\", \"logprobs\": true}", "logprobs", "expected an integer");
    bad(P, "{\"prompt\": \"a\", \"echo\": 1}", "echo", "expected a boolean");
    bad(P, "{\"prompt\": \"a\", \"max_tokens\": -1}", "max_tokens", "must be in [0,");
    bad(P, "{\"prompt\": \"a\", \"suffix\": \"b\"}", "suffix", "not supported");
    bad(P, "{\"prompt\": [\"a\", \"b\", \"c\", \"d\", \"e\"], \"n\": 16}", "n", "80 sequences, at most 64");
    bad(RMU_API_DETOKENIZE, "{\"tokens\": [1, 400]}", "tokens", "tokens[1]");
    bad(RMU_API_DETOKENIZE, "{\"tokens\": \"1\"}", "tokens", "expected an array of token ids");
    bad(RMU_API_TOKENIZE, "{\"prompt\": 5}", "prompt", "expected a string");
    bad(RMU_API_TOKENIZE, "{}", "prompt", "required");
}

static void test_error_json_is_valid_utf8(void **state) {
    (void)state;
    rmu_api_err err;
    rmu_api_errf(&err, 400, "invalid_request_error", "c", "messages[0].role", "bad role '\xe2\x96'");
    json_t *j = rmu_api_error_json(&err);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "bad role '\xef\xbf\xbd\xef\xbf\xbd'");
    assert_string_equal(json_string_value(json_object_get(e, "param")), "messages[0].role");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "c");
    json_decref(j);
    rmu_api_errf(&err, 404, "t", NULL, NULL, "x");
    j = rmu_api_error_json(&err);
    assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "code")));
    json_decref(j);
}

static void test_responses(void **state) {
    (void)state;
    rmu_api_req r;
    rmu_api_err err;
    assert_int_equal(parse(&r, RMU_API_COMPLETIONS, "{\"prompt\": \"the cat\", \"echo\": true, \"logprobs\": 2, \"n\": 2}", &err), 0);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    int n = r.prompts[0].n, gen[2] = {5, 6};
    rmu_eng_lp plps[16] = {{.id = r.prompts[0].ids[0], .ntop = -1}}, lps[2];
    for (int i = 1; i < n; i++) plps[i] = (rmu_eng_lp){.id = r.prompts[0].ids[i], .lp = -1.0f * i, .ntop = 1,
                                                       .top_id = {r.prompts[0].ids[i]}, .top_lp = {-1.0f * i}};
    for (int i = 0; i < 2; i++) lps[i] = (rmu_eng_lp){.id = gen[i], .lp = -0.25f, .ntop = 2, .top_id = {gen[i], 7}, .top_lp = {-0.25f, -2}};
    rmu_eng_seq_out o[2] = {{.prompt = r.prompts[0].ids, .n_prompt = n, .ids = gen, .nids = 2, .lps = lps, .nlps = 2,
                             .plps = plps, .nplps = n, .finish = RMU_FINISH_LENGTH, .n_reused = 3}};
    o[1] = o[0];
    o[1].finish = RMU_FINISH_STOP;
    rmu_sb_puts(&o[0].text, "xy");
    rmu_sb_puts(&o[1].text, "z");
    const rmu_eng_seq_out *po[2] = {&o[0], &o[1]};
    rmu_api_resp c = {&r, g_tok, "cmpl-1", "m", 123};
    json_t *j = rmu_api_response(&c, po);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    json_t *ch = json_object_get(j, "choices"), *c0 = json_array_get(ch, 0);
    assert_int_equal(json_array_size(ch), 2);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "the catxy");
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "length");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ch, 1), "finish_reason")), "stop");
    json_t *lp = json_object_get(c0, "logprobs");
    json_t *tl = json_object_get(lp, "token_logprobs"), *off = json_object_get(lp, "text_offset");
    assert_int_equal(json_array_size(tl), n + 2);
    assert_true(json_is_null(json_array_get(tl, 0)) && json_is_null(json_array_get(json_object_get(lp, "top_logprobs"), 0)));
    assert_true(json_real_value(json_array_get(tl, 1)) == -1.0);
    assert_true(json_real_value(json_array_get(tl, n)) == -0.25);
    assert_int_equal(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), n + 1)), 2);
    for (size_t i = 1; i < json_array_size(off); i++)
        assert_true(json_integer_value(json_array_get(off, i)) >= json_integer_value(json_array_get(off, i - 1)));
    assert_int_equal(json_integer_value(json_array_get(off, n)), strlen("the cat")); /* generated text starts there */
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), n);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")), 3);
    json_decref(j);
    /* first stream chunk of an echo: the prompt, then the text */
    j = rmu_api_chunk(&c, 1, 1, "q", 1, lps, 1, &o[1], RMU_FINISH_NONE);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "index")), 1);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "the catq");
    assert_true(json_is_null(json_object_get(c0, "finish_reason")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(c0, "logprobs"), "tokens")), n + 1);
    json_decref(j);
    rmu_api_req_free(&r);
    rmu_sb_free(&o[0].text);
    rmu_sb_free(&o[1].text);

    /* chat: message, logprobs.content entries with bytes and top_logprobs, role on the first chunk */
    assert_int_equal(parse(&r, RMU_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"logprobs\": true,"
                                             "\"top_logprobs\": 2, \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                           &err), 0);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    rmu_eng_seq_out co = {.prompt = r.prompts[0].ids, .n_prompt = r.prompts[0].n, .ids = gen, .nids = 2, .lps = lps,
                          .nlps = 2, .finish = RMU_FINISH_STOP};
    rmu_sb_puts(&co.text, "hey");
    const rmu_eng_seq_out *pc = &co;
    c = (rmu_api_resp){&r, g_tok, "chatcmpl-1", "m", 1};
    j = rmu_api_response(&c, &pc);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c0, "message"), "content")), "hey");
    json_t *content = json_object_get(json_object_get(c0, "logprobs"), "content");
    assert_int_equal(json_array_size(content), 2);
    json_t *e0 = json_array_get(content, 0);
    assert_true(json_is_array(json_object_get(e0, "bytes")) && json_is_string(json_object_get(e0, "token")));
    assert_int_equal(json_array_size(json_object_get(e0, "top_logprobs")), 2);
    json_decref(j);
    j = rmu_api_chunk(&c, 0, 1, "", 0, NULL, 0, NULL, RMU_FINISH_NONE);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c0, "delta"), "role")), "assistant");
    assert_true(json_is_null(json_object_get(j, "usage"))); /* include_usage: null until the last chunk */
    json_decref(j);
    j = rmu_api_usage_chunk(&c, &pc);
    assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")), 2);
    json_decref(j);
    rmu_sb_free(&co.text);
    rmu_api_req_free(&r);
}

static void test_tokenize_bodies(void **state) {
    (void)state;
    rmu_api_req r;
    rmu_api_err err;
    assert_int_equal(parse(&r, RMU_API_TOKENIZE, "{\"content\": \"the cat\", \"add_special_tokens\": false}", &err), 0);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    assert_true(r.prompts[0].n > 0 && r.prompts[0].ids[0] != rmu_tok_bos_id(g_tok));
    rmu_api_req_free(&r);
    assert_int_equal(parse(&r, RMU_API_TOKENIZE, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"add_generation_prompt\": false}", &err), 0);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_ZEPHYR, 300, 64, &err), 0);
    assert_null(strstr(r.rendered, "<|assistant|>"));
    rmu_api_req_free(&r);
    assert_int_equal(parse(&r, RMU_API_DETOKENIZE, "{\"tokens\": [1, 2, 299]}", &err), 0);
    assert_int_equal(rmu_api_encode(&r, g_tok, RMU_CHAT_PLAIN, 300, 64, &err), 0);
    assert_int_equal(r.prompts[0].n, 3);
    rmu_api_req_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_defaults_and_forms), cmocka_unit_test(test_completion_prompt_forms),
        cmocka_unit_test(test_errors_name_fields),      cmocka_unit_test(test_error_json_is_valid_utf8),
        cmocka_unit_test(test_responses),               cmocka_unit_test(test_tokenize_bodies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
