"""What a new password may not be, besides its length: a common one, or the account's email.

NIST SP 800-63B asks verifiers to refuse values that are commonly used or expected. The
common ones are the 30,000 most used passwords that zxcvbn ships, ranked from leaked password
sets; they are compared without regard to case.
"""

from functools import cache


@cache
def _common() -> frozenset[str]:
    # Imported on first use: the module holds zxcvbn's every word list (about 12 MiB), which
    # a worker that never checks a new password need not carry.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    return password.casefold() in _common()


def is_personal(password: str, email: str) -> bool:
    """The email, or its part before the @, as the password."""
    local = email.rpartition("@")[0]
    return password.casefold() in {email.casefold(), local.casefold()}
