/* main.c - `rmu` entry point: dispatches to the subcommands in src/cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "climem.h"
#include "core/version.h"
#include "sig.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command COMMANDS[] = {
    /* rmu-commands: one line per command, kept in the order of the README */
    {"generate", rmu_cmd_generate, "generate text from a prompt"},
    {"chat", rmu_cmd_chat, "interactive chat with the model's chat template"},
    {"tokenize", rmu_cmd_tokenize, "text lines to token ids (or back with --decode)"},
    {"info", rmu_cmd_info, "architecture, parameters, dtypes and memory of a model"},
    {"bench", rmu_cmd_bench, "prefill and decode speed"},
    {"init", rmu_cmd_init, "write a random-weight model of a given shape"},
    {"train", rmu_cmd_train, "fine-tune (causal LM) selected tensors with AdamW; checkpoints, resume"},
    {"unlearn", rmu_cmd_unlearn, "RMU: remove a domain of knowledge (WMDP defaults)"},
    {"eval", rmu_cmd_eval, "WMDP / MMLU / multiple-choice accuracy as lm-evaluation-harness v0.4.2"},
    {"attack", rmu_cmd_attack, "relearn / ablate: how much unlearned knowledge comes back"},
    {"mtbench", rmu_cmd_mtbench, "MT-Bench answers (FastChat format); mtbench judge / show: scores"},
    {"export", rmu_cmd_export, "the model as a GGUF file for llama.cpp / ollama (f32, f16, bf16, q8_0)"},
    {"quantize", rmu_cmd_quantize, "FP8 E4M3 weights with channel/tensor scales (compressed-tensors, for vLLM)"},
    {"demo", rmu_cmd_demo, "end-to-end demo: RMU removes one of two invented knowledge domains"},
    {"serve", rmu_cmd_serve, "OpenAI-compatible HTTP server (continuous batching) with a chat page"},
    {"logits", rmu_cmd_logits, "raw logits / hidden states for token ids (numeric checks)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: rmu COMMAND [options]   (rmu COMMAND --help for its options; rmu --version)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        printf("rmu %s\n", RMU_VERSION);
        return 0;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cli_sig_setup(argc, argv);                   /* Ctrl-C / SIGTERM for commands that write */
    if (cli_mem_precheck(&argc, argv)) return 1; /* before any command maps a model */
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return cli_sig_end(COMMANDS[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "rmu: unknown command '%s' (rmu --help lists them)\n", argv[1]);
    return 2;
}
