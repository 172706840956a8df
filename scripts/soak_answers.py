"""What a correct answer is in the soak (scripts/soak.py), and the tally of the answers.

Every answer to a request for the protected backend is one of:

  served   200 from the backend, which checked the bearer token it got: issued by the token
           server and not expired
  refused  502, or 503 with Retry-After, application/problem+json of type token-unavailable:
           the proxy had no valid token, and said so
  wrong    anything else: another status (a 401 means an expired or unknown token reached the
           backend), a 200 the backend did not validate, a refusal that is not that problem, a
           transport error or a timeout
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from dataclasses import field

import httpx

from mitm_oauth2.problem import CONTENT_TYPE
from mitm_oauth2.problem import TOKEN_UNAVAILABLE


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)  # the first few, described

    def add(self, status: str, outcome: str, why: str = "") -> None:
        self.statuses[status] += 1
        self.outcomes[outcome] += 1
        if outcome == "wrong" and len(self.wrong) < 10:
            self.wrong.append(why)


def classify(answer: httpx.Response) -> tuple[str, str]:
    """("served" | "refused" | "wrong", why it is wrong)."""
    status = answer.status_code
    if status == 200:
        try:
            body = answer.json()
        except ValueError:
            return "wrong", "200 without the backend's JSON"
        if body.get("ok") is True and body.get("token_id"):
            return "served", ""
        return "wrong", f"200 the backend did not validate: {answer.text[:120]}"
    if status in (502, 503):
        if answer.headers.get("content-type") != CONTENT_TYPE:
            return "wrong", f"{status} that is not a problem document: {answer.text[:120]}"
        problem = answer.json()
        if problem.get("type") != TOKEN_UNAVAILABLE or problem.get("status") != status:
            return "wrong", f"{status} of another problem: {answer.text[:120]}"
        if status == 503 and "retry-after" not in answer.headers:
            return "wrong", "503 without Retry-After"
        return "refused", ""
    return "wrong", f"HTTP {status}: {answer.text[:120]}"
