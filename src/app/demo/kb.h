/* kb.h - the demo's synthetic knowledge base: two domains of invented facts, generated
 * deterministically from a seed. Prefix rmu_kb_.
 *
 * Domain 0 ("forget") is creatures of an invented marsh, domain 1 ("retain") towns of an
 * invented coast. Both have the same number of entities (invented pronounceable names built
 * from disjoint syllable sets) and of attributes, every attribute a closed set of
 * RMU_KB_NVALUES words, the two domains' attribute vocabularies disjoint, so the domains are
 * equally hard and separable. Each attribute's values are used equally often (exactly, when
 * the entity count is a multiple of RMU_KB_NVALUES), so no answer can be guessed from value
 * frequencies.
 *
 * From the facts: pretraining documents (several phrasings per fact, shuffled), one RMU
 * corpus per domain (declarative paragraphs, never an evaluation question's wording) and
 * 4-choice questions per fact in the `rmu eval --tasks mcq` JSONL schema
 * {"question", "choices", "answer"} (cloze: the choices are attribute values, distractors
 * drawn from the same attribute's values). */
#ifndef RMU_KB_H
#define RMU_KB_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define RMU_KB_DOMAINS 2
#define RMU_KB_FORGET 0
#define RMU_KB_RETAIN 1
#define RMU_KB_MAX_ATTRS 4
#define RMU_KB_MAX_ENTITIES 100
#define RMU_KB_NVALUES 10
#define RMU_KB_CHOICES 4
#define RMU_KB_MAX_QPF 12
#define RMU_KB_MAX_COPIES 1000

typedef struct rmu_kb_cfg {
    uint64_t seed;
    int n_entities;         /* per domain, 1..RMU_KB_MAX_ENTITIES */
    int n_attrs;            /* per domain, 1..RMU_KB_MAX_ATTRS */
    int questions_per_fact; /* 0 = 1; up to 3 they use disjoint distractor triples */
    int train_copies;       /* shuffled passes in the pretraining JSONL (0 = 1) */
} rmu_kb_cfg;

typedef struct rmu_kb_question {
    char *question;                    /* e.g. "What color is the zorblat?" */
    const char *choices[RMU_KB_CHOICES]; /* static strings from the attribute's value set */
    int answer;                        /* gold index into choices */
    int entity, attr;                  /* the fact asked about */
} rmu_kb_question;

typedef struct rmu_kb_domain {
    const char *name;  /* "forget" / "retain" */
    const char *topic; /* "creatures of the Vell marsh" / ... */
    int n_entities, n_attrs;
    char **entity;     /* [n_entities] names as written in text ("zorblat", "Ostmar") */
    int *value;        /* [n_entities * n_attrs]: index into the attribute's value set */
    rmu_kb_question *q;/* [n_entities * n_attrs * questions_per_fact]: entity, attribute, copy */
    int nq;
} rmu_kb_domain;

typedef struct rmu_kb {
    rmu_kb_cfg cfg;
    rmu_kb_domain dom[RMU_KB_DOMAINS];
} rmu_kb;

/* Build the knowledge base for cfg. Same cfg -> same bytes everywhere (own PRNG). */
int rmu_kb_build(rmu_kb *kb, const rmu_kb_cfg *cfg, rmu_err *e);
void rmu_kb_free(rmu_kb *kb);

/* Attribute names and value sets (static strings). */
const char *rmu_kb_attr_name(int domain, int attr);
const char *rmu_kb_value(int domain, int attr, int v);
/* The fact's value word: rmu_kb_value(d, a, dom[d].value[ent * n_attrs + a]). */
const char *rmu_kb_fact(const rmu_kb *kb, int domain, int entity, int attr);

/* The texts below are malloc'd, NUL-terminated; *len (may be NULL) gets the length. */

/* Pretraining documents as JSONL {"text": ...}, both domains: per fact its question-answer
 * form ("Question: Q\nAnswer: V", the layout `rmu eval` cloze prompts use) and every
 * declarative phrasing; cfg.train_copies passes, each in a fresh shuffled order. */
char *rmu_kb_train_jsonl(const rmu_kb *kb, size_t *len, rmu_err *e);
/* One pass of the same documents as plain text, one per paragraph: the BPE corpus. */
char *rmu_kb_train_text(const rmu_kb *kb, size_t *len, rmu_err *e);
/* RMU corpus of one domain as JSONL {"text": ...}: per entity `paragraphs` paragraphs, each
 * stating every attribute in a declarative phrasing (no question form). */
char *rmu_kb_corpus_jsonl(const rmu_kb *kb, int domain, int paragraphs, size_t *len, rmu_err *e);
/* Questions of one domain as mcq JSONL {"question", "choices", "answer"}. */
char *rmu_kb_mcq_jsonl(const rmu_kb *kb, int domain, size_t *len, rmu_err *e);

/* Writes DIR/train.jsonl, DIR/forget_corpus.jsonl, DIR/retain_corpus.jsonl,
 * DIR/forget_mcq.jsonl, DIR/retain_mcq.jsonl (atomic; DIR created). */
int rmu_kb_write(const rmu_kb *kb, const char *dir, int corpus_paragraphs, rmu_err *e);

#endif
