"""The messages authz mails: one-time codes (to the user's own address only) and notices of identity changes to
a customer's user administrators. No message carries a password or a token; a code goes only to its user."""
from __future__ import annotations

import datetime as dt

from services.kit.mail import Mail


def code_mail(to: str, user_id: str, code: str, purpose: str, expires: dt.datetime) -> Mail:
    """The enrollment or reset code of `user_id`, to its own address."""
    what = ("An account was created for you" if purpose == "ENROLL"
            else "The password of your account was reset by an administrator")
    return Mail(to=to, subject=f"Remote Support: your one-time code for users/{user_id}", body=(
        f"{what}: users/{user_id}.\n\n"
        f"Your one-time code: {code}\n\n"
        f"It works once, until {expires.isoformat(timespec='minutes')}. Set your password with it:\n"
        f"    rsctl users set-password {user_id} --code {code}\n"
        "or AuthzService.SetPassword. Nobody else knows this code; nobody from support will ask you for it.\n"
        "If you did not expect this message, tell your user administrator.\n"))


def notice(to: str, subject: str, text: str) -> Mail:
    """A notice of an identity change to a user administrator or to the user it concerns."""
    return Mail(to=to, subject=f"Remote Support: {subject}", body=text.rstrip() + "\n\n"
                "Every change is in the customer's identity log (rsctl users log CUSTOMER).\n")
