"""The result of :func:`xai_core.lm.attribute`, named as Captum's ``LLMAttributionResult``."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from xai_core.lm.segments import token_strings
from xai_core.viz.matrix import matrix_html, matrix_image


@dataclass
class LMAttributionResult:
    """Each output token's score attributed to each prompt feature.

    Attributes:
      token_attr: ``(n_output, n_input)``: row ``i`` attributes output token ``i``'s score.
      seq_attr: ``(n_input,)``: the whole output's score attributed (for ``"log_prob"`` the sum
        of the rows).
      output_scores: ``(n_output,)``: each output token's score; ``seq_score`` the whole output's.
      input_tokens, output_tokens: one label per column (token strings with ``tokenizer=``, else
        ids; a segment's tokens joined) and per output token.
      input_ids, output_ids: the prompt's and the output's token ids.
    """

    input_ids: list[int]
    output_ids: list[int]
    token_attr: np.ndarray
    seq_attr: np.ndarray
    output_scores: np.ndarray
    seq_score: float
    labels: list[Any]
    tokenizer: Any = field(default=None, repr=False)
    method: str = ""
    score: str = ""

    @property
    def input_tokens(self) -> list[Any]:
        """One label per attributed feature: its text with ``tokenizer=``; without, its token id
        (a segment of several tokens: their ids as text)."""
        return list(self.labels)

    @property
    def output_tokens(self) -> list[Any]:
        """The output tokens: strings with a tokenizer, else ids."""
        return token_strings(self.output_ids, self.tokenizer) if self.tokenizer is not None else list(self.output_ids)

    def _rows(self) -> tuple[list[str], list[str], np.ndarray]:
        rows = [str(t) for t in self.output_tokens] + ["(all)"]
        return rows, [str(t) for t in self.input_tokens], np.vstack([self.token_attr, self.seq_attr[None]])

    def to_html(self, mode: str = "signed") -> str:
        """An HTML table: one row per output token (and the whole output last), one column per
        prompt feature, each cell coloured by its attribution."""
        rows, columns, values = self._rows()
        title = f"<p>{self.method} on {self.score}</p>" if self.method else ""
        return title + matrix_html(rows, columns, values, mode=mode)  # type: ignore[arg-type]

    def save(self, path: str | pathlib.Path, mode: str = "signed") -> pathlib.Path:
        """Write the table as ``.png`` (a picture), ``.html`` or ``.json`` (by the suffix)."""
        path = pathlib.Path(path)
        if path.suffix == ".html":
            path.write_text(self.to_html(mode), encoding="utf-8")
        elif path.suffix == ".json":
            path.write_text(self.to_json(), encoding="utf-8")
        elif path.suffix == ".png":
            Image.fromarray(matrix_image(*self._rows(), mode=mode)).save(path)  # type: ignore[arg-type]
        else:
            raise ValueError(f"LMAttributionResult.save: {path.name} must end in .png, .html or .json.")
        return path

    def to_json(self) -> str:
        """Everything as JSON: ids, labels, ``token_attr``, ``seq_attr``, scores, method and score."""
        return json.dumps({
            "input_ids": self.input_ids, "output_ids": self.output_ids,
            "input_tokens": [str(t) for t in self.input_tokens], "output_tokens": [str(t) for t in self.output_tokens],
            "token_attr": np.asarray(self.token_attr).tolist(), "seq_attr": np.asarray(self.seq_attr).tolist(),
            "output_scores": np.asarray(self.output_scores).tolist(), "seq_score": self.seq_score,
            "method": self.method, "score": self.score})
