#!/usr/bin/env bash
# layers.sh - the include rules of ARCHITECTURE.md hold: each folder of src/ includes only
# the folders below it, so a library layer never reaches up into its callers.
. "$(dirname "$0")/../lib.sh"

# folder -> the folders it may include (besides itself); keep in step with ARCHITECTURE.md
declare -A MAY=(
    [core]=""
    [io]="core"
    [tokenizer]="core"
    [kernels]="core"
    [model]="core io tokenizer kernels"
    [train]="core io tokenizer kernels model"
    [eval]="core io tokenizer kernels model"
    [attack]="core io tokenizer kernels model train eval"
    [serve]="core io tokenizer kernels model eval"
    [app]="core io tokenizer kernels model train eval attack"
    [cli]="core io tokenizer kernels model train eval attack serve app"
)
# violations SRC: one "FILE includes DIR/" per upward (or unknown) include under SRC
violations() {
    local src=$1 dir d line file inc
    for dir in "$src"/*/; do
        d=$(basename "$dir")
        if [ -z "${MAY[$d]+set}" ]; then echo "src/$d is not in the layer table"; continue; fi
        while IFS= read -r line; do
            file=${line%%:*}
            inc=$(echo "$line" | sed -E 's/.*#include "([a-z_]+)\/.*/\1/')
            [ "$inc" = "$d" ] && continue
            case " ${MAY[$d]} " in *" $inc "*) ;; *) echo "${file#$src/} includes $inc/" ;; esac
        done < <(grep -rnE '^#include "[a-z_]+/' "$dir" | cut -d: -f1,3-)
    done
}

bad=$(violations "$ROOT/src")
if [ -z "$bad" ]; then ok "layers: every src/ folder includes only the folders below it"
else fail "layers: include rules" "$(echo "$bad" | tr '\n' ';')"; fi

# the scan catches what it should: a tree with one upward include and one allowed one
t="$TMP/tree"
rm -rf "$t" && mkdir -p "$t/core" "$t/model"
printf '#include "core/err.h"\n#include "model/model.h"\n' > "$t/core/a.h"
printf '#include "core/err.h"\n#include "kernels/gemm.h"\n' > "$t/model/b.h"
got=$(violations "$t")
if [ "$got" = "core/a.h includes model/" ]; then ok "layers: the scan reports an upward include, and only it"
else fail "layers: probe tree" "got '$got'"; fi
