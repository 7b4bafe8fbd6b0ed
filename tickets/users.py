"""Web users and roles, password hashing (scrypt), API tokens and browser sessions hashed at rest.

A user is a person who works in the console (agent, supervisor, admin); a chat visitor is not.
Passwords are stored as ``scrypt$N$r$p$salt$hash`` (``hashlib.scrypt``, RFC 7914, N=2^14, r=8,
p=1, 16-byte salt) and checked in constant time off the event loop. API tokens and session ids
are random 32-byte values shown once; only their SHA-256 is stored, so a copy of the database
lets nobody in. Logins, failed logins and token changes are written to the audit history.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tickets.errors import TicketsError
from tickets.models import Base, EnumText
from tickets.repository import Clock, record_audit, utc_now


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class UserError(TicketsError):
    """Base of the users' errors."""

    error_id = "user-error"


class InvalidCredentials(UserError):
    """Unknown user, wrong password, disabled user, or an unknown/expired token or session."""

    error_id = "invalid-credentials"


class InvalidUser(UserError):
    """A user name, display name, role or password that cannot be accepted."""

    error_id = "user-invalid"


class UserExists(UserError):
    """The user name is taken."""

    error_id = "user-exists"


class User(Base):
    """A person who logs into the console."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('agent', 'supervisor', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[Role] = mapped_column(EnumText(Role))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token for the REST API; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """A browser session (cookie); only the id's SHA-256 is kept, with its CSRF token."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
# a real hash to check against when the user does not exist, so timing reveals nothing
_DUMMY_HASH = ""


def hash_password(password: str) -> str:
    """The stored form of a password (blocking: ~50 ms of CPU by design)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash (constant-time compare; bad hashes never match)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if not _DUMMY_HASH:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    return _DUMMY_HASH


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidUser(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request: a user and how they proved it."""

    user_id: int
    username: str
    role: Role
    via: str  # "session" or "token"
    csrf_token: str = ""


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A token or session id as handed out once; only its hash is stored."""

    value: str
    principal: Principal


class UserDirectory:
    """Users, tokens and sessions inside the caller's transaction."""

    def __init__(self, session: AsyncSession, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock

    async def add(
        self, username: str, password: str, role: Role | str, *, actor: str, display_name: str = ""
    ) -> User:
        name = username.strip().lower()
        if not _USERNAME.match(name):
            raise InvalidUser("a user name is 1-64 of a-z, 0-9, '.', '_', '-', starting alnum")
        try:
            role = Role(role)
        except ValueError as err:
            raise InvalidUser(f"unknown role {role!r}: one of {', '.join(Role)}") from err
        check_password_rules(password)
        hashed = await asyncio.to_thread(hash_password, password)
        user = User(
            username=name,
            display_name=(display_name or name)[:200],
            role=role,
            password_hash=hashed,
            active=True,
            created_at=self.clock(),
        )
        try:
            async with self.session.begin_nested():
                self.session.add(user)
                await self.session.flush()
        except IntegrityError as err:
            raise UserExists(f"user {name!r} exists") from err
        self._audit(actor, "user.created", user, role=str(role))
        return user

    async def by_username(self, username: str) -> User | None:
        query = select(User).where(User.username == username.strip().lower())
        return (await self.session.execute(query)).scalar_one_or_none()

    async def authenticate(self, username: str, password: str, *, source: str = "") -> User | None:
        """The active user with this password, or None; audited either way (commit both)."""
        user = await self.by_username(username)
        stored = user.password_hash if user is not None else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password[:MAX_PASSWORD_LENGTH], stored)
        if user is None or not ok or not user.active:
            record_audit(
                self.session,
                at=self.clock(),
                actor=f"web:{source}" if source else "web",
                action="user.login_failed",
                data={"username": username[:64], "source": source},
            )
            return None
        self._audit(f"user:{user.username}", "user.logged_in", user, source=source)
        return user

    # -- sessions ------------------------------------------------------------------------------

    async def open_session(self, user: User, *, lifetime: timedelta) -> IssuedSecret:
        value = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        self.session.add(
            WebSession(
                user_id=user.id,
                session_sha256=sha256_hex(value),
                csrf_token=csrf,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
        await self.session.flush()
        return IssuedSecret(value, _principal(user, "session", csrf))

    async def by_session(self, value: str) -> Principal:
        query = (
            select(WebSession, User)
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.session_sha256 == sha256_hex(value))
        )
        row = (await self.session.execute(query)).one_or_none()
        if row is None or row[0].expires_at <= self.clock() or not row[1].active:
            raise InvalidCredentials("no such session, or it expired")
        return _principal(row[1], "session", row[0].csrf_token)

    async def close_session(self, value: str) -> None:
        query = select(WebSession).where(WebSession.session_sha256 == sha256_hex(value))
        found = (await self.session.execute(query)).scalar_one_or_none()
        if found is not None:
            await self.session.delete(found)

    # -- API tokens ----------------------------------------------------------------------------

    async def issue_token(self, user: User, name: str, *, actor: str) -> IssuedSecret:
        value = "cct_" + secrets.token_urlsafe(32)
        token = ApiToken(
            user_id=user.id,
            name=name[:100] or "token",
            token_sha256=sha256_hex(value),
            created_at=self.clock(),
        )
        self.session.add(token)
        await self.session.flush()
        self._audit(actor, "user.token_issued", user, token_id=token.id, name=token.name)
        return IssuedSecret(value, _principal(user, "token"))

    async def by_token(self, value: str) -> Principal:
        query = (
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_sha256 == sha256_hex(value))
        )
        row = (await self.session.execute(query)).one_or_none()
        if row is None or row[0].revoked_at is not None or not row[1].active:
            raise InvalidCredentials("unknown or revoked API token")
        row[0].last_used_at = self.clock()
        return _principal(row[1], "token")

    async def revoke_token(self, token_id: int, *, actor: str) -> None:
        token = await self.session.get(ApiToken, token_id)
        if token is None:
            raise InvalidCredentials(f"no token {token_id}")
        token.revoked_at = self.clock()
        user = await self.session.get(User, token.user_id)
        if user is not None:
            self._audit(actor, "user.token_revoked", user, token_id=token_id)

    def _audit(self, actor: str, action: str, user: User, **data: object) -> None:
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action=action,
            data={"user_id": user.id, "username": user.username, **data},
        )


def _principal(user: User, via: str, csrf: str = "") -> Principal:
    return Principal(user.id, user.username, user.role, via, csrf)
