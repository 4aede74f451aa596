#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for bench/gpu_check.sh on an offline CUDA machine with Python 3.12 and a CUDA 13
# PyTorch + transformers + accelerate (what the machine lacks travels): the wheels of the packages it lacks, the
# bitsandbytes package unpacked with its CUDA 13 and CPU libraries only (the wheel's 18 other builds are 110 MB),
# and the data files the checks read (German and English; the study's analyses add fr hi ja sw zh), copied from $MLALIGN_DATA_DIR.
# On that machine:  bash bench/gpu_bundle.sh --install  (then PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu
if [ "${1:-}" = --install ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $dest/wheels/*.whl
  cp -r $dest/site/. /tmp/site/
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target /tmp/site .
  exit
fi
data=${MLALIGN_DATA_DIR:?set MLALIGN_DATA_DIR to the data mirror}
rm -rf $dest
mkdir -p $dest/wheels $dest/site $dest/data
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d $dest/wheels bitsandbytes==0.50.2 trl==1.16.0 peft==0.21.2 'datasets>=4.7,<5' 'dill<0.4.2' \
  'multiprocess<0.70.20' lm-eval==0.4.13 evaluate pytablewriter dataproperty mbstrdecoder pathvalidate tabledata \
  tcolorpy typepy chardet more-itertools nltk liger-kernel==0.8.5
python3 -m pip wheel -q --no-deps -w $dest/wheels sqlitedict word2number rouge-score
bnb=$(ls $dest/wheels/bitsandbytes-*.whl)
python3 -m zipfile -e "$bnb" $dest/site
rm "$bnb"
find $dest/site/bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*_cuda13*' ! -name '*_cpu*' -delete
for f in gsm8k/train_en.jsonl question_translation/gsm8k/de-en/train.de question_translation/gsm8k/de-en/train.en \
  mgsm/mgsm_de.tsv mgsm/mgsm_en.tsv mgsm/exemplars.json paper_tasks/prompts.json \
  paper_tasks/snli/snli_de600_test.json paper_tasks/snli/snli_en600_test.json \
  paper_tasks/paws/paws_de500_test.json paper_tasks/paws/paws_en500_test.json \
  paper_tasks/ap_emotion/emotion_{de,en,fr,hi,ja,sw,zh}500_test.json; do  # mlalign run's analysis languages
  mkdir -p "$dest/data/$(dirname $f)"
  cp "$data/$f" "$dest/data/$f"
done
du -sh $dest
