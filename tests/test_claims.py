from repro.claims import check_claim
from repro.spec.schema import Claim


def _c(op, b, margin=0.0):
    return Claim(id="c", text="t", metric="top1", a="x", op=op, b=b, margin=margin)


def test_claim_statuses():
    vals = {"x": {"top1": 36.0}, "y": {"top1": 35.0}, "z": {}}
    assert check_claim(_c(">", "y"), vals).status == "held"
    assert check_claim(_c("<", "y"), vals).status == "failed"
    assert check_claim(_c(">", "y", margin=1.0), vals).status == "failed"  # 36 > 35 + 1 is false
    assert check_claim(_c(">=", "y", margin=1.0), vals).status == "held"
    assert check_claim(_c(">", 35.5), vals).status == "held"
    r = check_claim(_c(">", "z"), vals)
    assert (r.status, r.a, r.b) == ("not run", 36.0, None)
    assert check_claim(_c("<=", "y", margin=0.5), {"x": {"top1": 34.5}, "y": {"top1": 35.0}}).status == "held"
