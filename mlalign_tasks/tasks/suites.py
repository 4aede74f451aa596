"""The one table of benchmark suites: lm-eval task names -> (benchmark, language), ours and lm-eval's built-ins.

Our task families (`mgsm_aligned_de`) and lm-eval 0.4.13's built-in multilingual suites (`xnli_de`,
`belebele_deu_Latn`, `global_mmlu_de`, ...) share one vocabulary here, so that `mlalign eval --tasks`
accepts either and the leaderboard puts every suite on one board. Languages are normalised to the
shortest standard tag (ISO 639-1 where one exists, else ISO 639-3; a script only where a suite has a
second script for the same language), so seen / unseen splits and the heatmap line up across suites.
The built-in names are checked against lm-eval's own task index by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlalign_tasks.tasks.languages import FAMILIES, LANGUAGES


@dataclass(frozen=True)
class Suite:
    """A benchmark: one lm-eval task (or, `per_language_group`, one lm-eval group) per language."""

    name: str  # the benchmark's name on the board
    prefix: str  # task name = prefix + the suite's own language code
    codes: dict[str, str]  # the suite's language code -> normalised language
    group: str | None  # lm-eval group (aggregate) over the languages, if there is one
    choices: int | None  # answer options of a classification task (chance = 1/choices); None: generated answers
    builtin: bool = True  # an lm-eval built-in (indexed only when asked for)
    per_language_group: bool = False  # each language is an lm-eval group of subject tasks (Global-MMLU)

    def task(self, lang: str) -> str:
        """The lm-eval name of this suite's task (or per-language group) for a normalised language."""
        return self.prefix + next(code for code, norm in self.codes.items() if norm == lang)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.codes.values())


def _same(*codes: str) -> dict[str, str]:
    return {c: c for c in codes}


MGSM = _same("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
# Belebele's FLORES-200 codes (ISO 639-3 + script) -> normalised tags (macrolanguages as ISO 639-1: arb -> ar,
# zsm -> ms, nob -> no as in the paper's table; romanised variants keep their script).
BELEBELE = {
    "acm_Arab": "acm", "afr_Latn": "af", "als_Latn": "sq", "amh_Ethi": "am", "apc_Arab": "apc", "arb_Arab": "ar",
    "arb_Latn": "ar-Latn", "ars_Arab": "ars", "ary_Arab": "ary", "arz_Arab": "arz", "asm_Beng": "as",
    "azj_Latn": "az", "bam_Latn": "bm", "ben_Beng": "bn", "ben_Latn": "bn-Latn", "bod_Tibt": "bo",
    "bul_Cyrl": "bg", "cat_Latn": "ca", "ceb_Latn": "ceb", "ces_Latn": "cs", "ckb_Arab": "ckb", "dan_Latn": "da",
    "deu_Latn": "de", "ell_Grek": "el", "eng_Latn": "en", "est_Latn": "et", "eus_Latn": "eu", "fin_Latn": "fi",
    "fra_Latn": "fr", "fuv_Latn": "fuv", "gaz_Latn": "om", "grn_Latn": "gn", "guj_Gujr": "gu", "hat_Latn": "ht",
    "hau_Latn": "ha", "heb_Hebr": "he", "hin_Deva": "hi", "hin_Latn": "hi-Latn", "hrv_Latn": "hr",
    "hun_Latn": "hu", "hye_Armn": "hy", "ibo_Latn": "ig", "ilo_Latn": "ilo", "ind_Latn": "id", "isl_Latn": "is",
    "ita_Latn": "it", "jav_Latn": "jv", "jpn_Jpan": "ja", "kac_Latn": "kac", "kan_Knda": "kn", "kat_Geor": "ka",
    "kaz_Cyrl": "kk", "kea_Latn": "kea", "khk_Cyrl": "mn", "khm_Khmr": "km", "kin_Latn": "rw", "kir_Cyrl": "ky",
    "kor_Hang": "ko", "lao_Laoo": "lo", "lin_Latn": "ln", "lit_Latn": "lt", "lug_Latn": "lg", "luo_Latn": "luo",
    "lvs_Latn": "lv", "mal_Mlym": "ml", "mar_Deva": "mr", "mkd_Cyrl": "mk", "mlt_Latn": "mt", "mri_Latn": "mi",
    "mya_Mymr": "my", "nld_Latn": "nl", "nob_Latn": "no", "npi_Deva": "ne", "npi_Latn": "ne-Latn",
    "nso_Latn": "nso", "nya_Latn": "ny", "ory_Orya": "or", "pan_Guru": "pa", "pbt_Arab": "pbt", "pes_Arab": "fa",
    "plt_Latn": "mg", "pol_Latn": "pl", "por_Latn": "pt", "ron_Latn": "ro", "rus_Cyrl": "ru", "shn_Mymr": "shn",
    "sin_Latn": "si-Latn", "sin_Sinh": "si", "slk_Latn": "sk", "slv_Latn": "sl", "sna_Latn": "sn",
    "snd_Arab": "sd", "som_Latn": "so", "sot_Latn": "st", "spa_Latn": "es", "srp_Cyrl": "sr", "ssw_Latn": "ss",
    "sun_Latn": "su", "swe_Latn": "sv", "swh_Latn": "sw", "tam_Taml": "ta", "tel_Telu": "te", "tgk_Cyrl": "tg",
    "tgl_Latn": "tl", "tha_Thai": "th", "tir_Ethi": "ti", "tsn_Latn": "tn", "tso_Latn": "ts", "tur_Latn": "tr",
    "ukr_Cyrl": "uk", "urd_Arab": "ur", "urd_Latn": "ur-Latn", "uzn_Latn": "uz", "vie_Latn": "vi",
    "war_Latn": "war", "wol_Latn": "wo", "xho_Latn": "xh", "yor_Latn": "yo", "zho_Hans": "zh",
    "zho_Hant": "zh-Hant", "zsm_Latn": "ms", "zul_Latn": "zu",
}  # fmt: skip
GLOBAL_MMLU_LITE = _same("ar", "bn", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "pt", "sw", "yo", "zh")
GLOBAL_MMLU_FULL = _same(
    "am", "ar", "bn", "cs", "de", "el", "en", "es", "fa", "fil", "fr", "ha", "he", "hi", "id", "ig", "it", "ja", "ko",
    "ky", "lt", "mg", "ms", "ne", "nl", "ny", "pl", "pt", "ro", "ru", "si", "sn", "so", "sr", "sv", "sw", "te", "tr",
    "uk", "vi", "yo", "zh",
)  # fmt: skip

BUILTIN: tuple[Suite, ...] = (
    Suite("mgsm_direct", "mgsm_direct_", MGSM, None, None),
    Suite("mgsm_native_cot", "mgsm_native_cot_", MGSM, None, None),
    Suite("mgsm_en_cot", "mgsm_en_cot_", MGSM, None, None),
    Suite(
        "xnli",
        "xnli_",
        _same(*["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]),
        "xnli",
        3,
    ),
    Suite("pawsx", "paws_", _same("de", "en", "es", "fr", "ja", "ko", "zh"), "pawsx", 2),
    Suite("xcopa", "xcopa_", _same(*["et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"]), "xcopa", 2),
    Suite(
        "xstorycloze",
        "xstorycloze_",
        _same(*["ar", "en", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh"]),
        "xstorycloze",
        2,
    ),
    Suite("xwinograd", "xwinograd_", _same("en", "fr", "pt", "ru", "zh") | {"jp": "ja"}, "xwinograd", 2),
    Suite("belebele", "belebele_", BELEBELE, "belebele", 4),
    Suite("global_mmlu", "global_mmlu_", GLOBAL_MMLU_LITE, None, 4, per_language_group=True),
    Suite("global_mmlu_full", "global_mmlu_full_", GLOBAL_MMLU_FULL, None, 4, per_language_group=True),
)
_CHOICES = {"snli_aligned": 3, "paws_aligned": 2}  # our classification families; sentiment's variants have 2
OURS: tuple[Suite, ...] = tuple(
    Suite(
        family, family + "_", _same(*langs), family, _CHOICES.get(family, 2 if "sentiment" in family else None), False
    )
    for family, langs in FAMILIES.items()
)
SUITES: dict[str, Suite] = {s.name: s for s in (*OURS, *BUILTIN)}
# lm-eval name of a language cell (a task, or a per-language group) -> (suite, normalised language)
CELLS: dict[str, tuple[Suite, str]] = {
    s.prefix + code: (s, lang) for s in SUITES.values() for code, lang in s.codes.items()
}


def lookup(name: str) -> tuple[Suite, str] | None:
    """(suite, language) of an lm-eval task name that is one language of a known suite, else None."""
    return CELLS.get(name)


def language_order(codes: set[str]) -> list[str]:
    """Languages in the order of our language table, then the other suites' languages alphabetically."""
    return [c for c in LANGUAGES if c in codes] + sorted(codes - set(LANGUAGES))
