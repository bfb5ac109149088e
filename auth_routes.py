"""/auth: accounts, logins, token rotation and user administration."""

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Response, status
from pydantic import ConfigDict, Field

import auth_service
import security
from database import Database
from dependencies import (
    AdminUser,
    CurrentUser,
    DatabaseDep,
    Pagination,
    PathId,
    SessionDep,
    SettingsDep,
    unauthorized,
)
from errors import responses
from models import User
from schemas import (
    Email,
    Input,
    LoginPassword,
    LoginRequest,
    Page,
    PasswordChange,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginForm(Input):
    """The OAuth2 password flow's form, as Swagger's Authorize dialog sends it."""

    model_config = ConfigDict(extra="forbid")

    username: Email = Field(description="The account's email")
    password: LoginPassword
    grant_type: Annotated[str | None, Field(pattern="^password$")] = None
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=responses(409),
)
def signup(body: UserCreate, db: SessionDep) -> User:
    """Create an account. Anyone may sign up; the email is stored lower-cased and must not be
    taken in any letter case. The password is 8 to 128 characters. New accounts are active
    customers, never admins.
    """
    return auth_service.signup(db, body)


async def _login(database: Database, settings: Settings, email: str, password: str) -> TokenPair:
    try:
        return await auth_service.log_in(database, settings, email, password)
    except auth_service.Throttled as throttled:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="Too many failed login attempts; try again later",
            headers={"Retry-After": str(throttled.retry_after)},
        ) from None
    except auth_service.InvalidCredentials:
        raise unauthorized("Incorrect email or password") from None
    except auth_service.Deactivated:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="This account is deactivated"
        ) from None


@router.post("/login", response_model=TokenPair, responses=responses(401, 403, 429))
async def login(body: LoginRequest, database: DatabaseDep, settings: SettingsDep) -> TokenPair:
    """Exchange email and password for an access token (30 minutes) and a refresh token (7
    days).

    A wrong password and an unknown email get the same 401. After 5 failed attempts for one
    email within 15 minutes every attempt gets 429, even with the right password, with
    `Retry-After` in seconds; a successful login clears the count. A deactivated account
    gets 403.
    """
    return await _login(database, settings, body.email, body.password)


@router.post(
    "/login-form",
    summary="Log in (OAuth2 password form)",
    response_model=TokenPair,
    responses=responses(401, 403, 429),
)
async def login_form(
    form: Annotated[LoginForm, Form()], database: DatabaseDep, settings: SettingsDep
) -> TokenPair:
    """The same as `POST /auth/login`, as the OAuth2 password flow: a form with `username` (the
    email) and `password`. Swagger's **Authorize** button uses this route.
    """
    return await _login(database, settings, form.username, form.password)


@router.post("/refresh", response_model=TokenPair, responses=responses(401))
def refresh(body: RefreshRequest, db: SessionDep, settings: SettingsDep) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once: the one presented
    is spent. Presenting a spent token again means it leaked, so every token issued from it
    since is revoked as well.
    """
    tokens = auth_service.rotate(db, settings, body.refresh_token)
    if tokens is None:
        raise unauthorized("Invalid, expired or already used refresh token")
    return tokens


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401))
def logout(body: RefreshRequest, db: SessionDep, settings: SettingsDep) -> Response:
    """Revoke a refresh token. Logging out a token that is already spent or revoked also
    succeeds; a forged, malformed or expired one is 401. Access tokens expire on their own.
    """
    try:
        auth_service.logout(db, settings, body.refresh_token)
    except security.InvalidToken:
        raise unauthorized("Invalid or expired refresh token") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", summary="Current user", response_model=UserPublic, responses=responses(401))
async def me(user: CurrentUser) -> UserPublic:
    """The account the access token belongs to. A deactivated account is refused at once, not
    only at its next login.
    """
    return user


@router.post("/change-password", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401))
def change_password(body: PasswordChange, user: CurrentUser, db: SessionDep) -> Response:
    """Set a new password (8 to 128 characters) after proving the current one. Every refresh
    token of the account is revoked, so other sessions must log in again.
    """
    if not auth_service.change_password(db, user, body.current_password, body.new_password):
        raise unauthorized("Current password is incorrect")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users", response_model=Page[UserPublic], responses=responses(401, 403))
def list_users(_admin: AdminUser, db: SessionDep, page: Pagination) -> Page[UserPublic]:
    """Admins only: every account, oldest first, a page at a time."""
    users, total = auth_service.list_users(db, limit=page.limit, offset=page.offset)
    return Page[UserPublic](
        items=[UserPublic.model_validate(u) for u in users],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.patch(
    "/users/{user_id}", response_model=UserPublic, responses=responses(401, 403, 404, 409)
)
def update_user(user_id: PathId, body: UserUpdate, admin: AdminUser, db: SessionDep) -> User:
    """Admins only: activate or deactivate an account, or grant or remove admin rights. A
    deactivated user's tokens stop working at once. Admins cannot remove their own admin or
    active flag (409), so there is always an admin.
    """
    user = auth_service.update_user(db, admin, user_id, body)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="User not found")
    return user
