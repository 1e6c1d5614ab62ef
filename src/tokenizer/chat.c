/* chat.c - chat prompts: the model's chat template rendered with the jinja module the way
 * transformers' apply_chat_template does (trim_blocks and lstrip_blocks on,
 * keep_trailing_newline off; messages, add_generation_prompt and the special token strings
 * as variables), plus two built-in formats for models without a usable template. */
#include "tokenizer/chat.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "tokenizer/jinja.h"

/* The template's variables: messages, add_generation_prompt, the special token strings the
 * tokenizer has (one it lacks stays undefined, as in HF), tools and documents as none. */
static json_t *template_vars(const rmu_tokenizer *t, const rmu_chat_msg *msgs, int n, int agp) {
    json_t *v = json_object(), *ml = json_array();
    int bad = !v || !ml || json_object_set(v, "messages", ml);
    for (int i = 0; i < n && !bad; i++) {
        json_t *m = json_object();
        /* nocheck: the text is passed through as bytes, valid UTF-8 or not */
        bad = !m || json_array_append_new(ml, m) ||
              json_object_set_new(m, "role", msgs[i].role ? json_string_nocheck(msgs[i].role) : json_null()) ||
              json_object_set_new(m, "content", msgs[i].content ? json_string_nocheck(msgs[i].content) : json_null());
    }
    int unk = rmu_tok_unk_id(t), pad = rmu_tok_pad_id(t);
    const char *names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    const char *toks[] = {rmu_tok_bos_str(t), rmu_tok_eos_str(t), unk >= 0 ? rmu_tok_piece(t, unk) : NULL,
                          pad >= 0 ? rmu_tok_piece(t, pad) : NULL};
    for (int k = 0; k < 4 && !bad; k++)
        if (toks[k]) bad = json_object_set_new(v, names[k], json_string_nocheck(toks[k]));
    if (!bad)
        bad = json_object_set_new(v, "add_generation_prompt", json_boolean(agp)) ||
              json_object_set_new(v, "tools", json_null()) || json_object_set_new(v, "documents", json_null());
    json_decref(ml);
    if (bad) json_decref(v);
    return bad ? NULL : v;
}

static char *render_template(const rmu_tokenizer *t, const char *tmpl, const rmu_chat_msg *msgs, int n, int agp,
                             rmu_err *e) {
    const rmu_jinja_opts o = {.name = "tokenizer_config.json: chat_template", .trim_blocks = 1, .lstrip_blocks = 1};
    rmu_jinja *j = rmu_jinja_parse(tmpl, strlen(tmpl), &o, e);
    if (!j) {
        /* outside the subset (or broken): the built-in formats still work */
        if (e) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            rmu_errf(e, "%s; use template zephyr or plain instead", msg);
        }
        return NULL;
    }
    json_t *vars = template_vars(t, msgs, n, agp);
    char *s = vars ? rmu_jinja_render(j, vars, NULL, e) : NULL;
    if (!vars) rmu_errf(e, "chat: out of memory");
    json_decref(vars);
    rmu_jinja_free(j);
    return s;
}

/* ---------------------------------------------------------------- built-in formats */

/* The built text, or NULL + e when building it ran out of memory. */
static char *took(rmu_sb *b, rmu_err *e) {
    char *s = rmu_sb_take(b);
    if (!s) rmu_errf(e, "chat: out of memory");
    return s;
}

/* Zephyr: "<|role|>\n" + content + EOS + "\n" per message, then "<|assistant|>\n" when a
 * generation prompt is asked for; exactly what the zephyr-7b-beta template renders. */
static char *render_zephyr(const rmu_tokenizer *t, const rmu_chat_msg *msgs, int n, int agp, rmu_err *e) {
    rmu_sb b = {0};
    const char *eos = t && rmu_tok_eos_str(t) ? rmu_tok_eos_str(t) : "</s>";
    for (int i = 0; i < n; i++)
        rmu_sb_printf(&b, "<|%s|>\n%s%s\n", msgs[i].role ? msgs[i].role : "user", msgs[i].content ? msgs[i].content : "",
                      eos);
    if (agp) rmu_sb_puts(&b, "<|assistant|>\n");
    return took(&b, e);
}

/* Plain: for models without a chat template. Each message is "Role: content\n" with the
 * role capitalized ("System", "User", "Assistant"); the generation prompt is "Assistant:"
 * with no trailing space or newline, so the model continues the assistant line:
 *   System: S\nUser: U\nAssistant:
 * No special tokens are added to the text (rmu_chat_encode still adds BOS). */
static char *render_plain(const rmu_chat_msg *msgs, int n, int agp, rmu_err *e) {
    rmu_sb b = {0};
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role && *msgs[i].role ? msgs[i].role : "user";
        rmu_sb_printf(&b, "%c%s: %s\n", toupper((unsigned char)role[0]), role + 1, msgs[i].content ? msgs[i].content : "");
    }
    if (agp) rmu_sb_puts(&b, "Assistant:");
    return took(&b, e);
}

int rmu_chat_kind_parse(const char *s) {
    if (!s || !strcmp(s, "auto")) return RMU_CHAT_AUTO;
    if (!strcmp(s, "zephyr")) return RMU_CHAT_ZEPHYR;
    if (!strcmp(s, "plain")) return RMU_CHAT_PLAIN;
    return -1;
}

char *rmu_chat_render(const rmu_tokenizer *t, rmu_chat_kind kind, const rmu_chat_msg *msgs, int n,
                      int add_generation_prompt, rmu_err *e) {
    if (n < 0 || (n && !msgs)) {
        rmu_errf(e, "chat: %d messages", n);
        return NULL;
    }
    switch (kind) {
    case RMU_CHAT_ZEPHYR: return render_zephyr(t, msgs, n, add_generation_prompt, e);
    case RMU_CHAT_PLAIN: return render_plain(msgs, n, add_generation_prompt, e);
    case RMU_CHAT_AUTO: {
        const char *tmpl = t ? rmu_tok_chat_template(t) : NULL;
        if (!tmpl) return render_plain(msgs, n, add_generation_prompt, e);
        return render_template(t, tmpl, msgs, n, add_generation_prompt, e);
    }
    }
    rmu_errf(e, "chat: unknown template kind %d (expected auto, zephyr or plain)", (int)kind);
    return NULL;
}

int rmu_chat_encode(const rmu_tokenizer *t, const char *prompt, int **ids, int *n, rmu_err *e) {
    const char *bos = rmu_tok_bos_str(t);
    int add = rmu_tok_add_bos(t) && !(bos && !strncmp(prompt, bos, strlen(bos)));
    return rmu_tok_encode(t, prompt, strlen(prompt), add, ids, n, e);
}
