"""Privacy by construction (issue 18): patient references sealed at rest
(:mod:`~openvisit.privacy.refs`), per-organisation retention enforced by a periodic job
(:mod:`~openvisit.privacy.retention`) and the erasure of one patient
(:mod:`~openvisit.privacy.erasure`). ``docs/privacy.md`` says the same for a privacy officer."""
