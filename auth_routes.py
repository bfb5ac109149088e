"""/auth: accounts, logins, token rotation and user administration."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Response, status
from pydantic import ConfigDict, Field

import auth_service
import password_reset
from dependencies import (
    AdminUser,
    ClientAddress,
    CurrentUser,
    DatabaseDep,
    NoStore,
    Pagination,
    PathId,
    SettingsDep,
)
from errors import responses
from schemas import (
    Email,
    Input,
    LoginPassword,
    LoginRequest,
    Notice,
    Page,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserPublic,
    UserUpdate,
)

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


@router.post("/signup", status_code=status.HTTP_201_CREATED, responses=responses(409, 429))
async def signup(
    body: UserCreate, database: DatabaseDep, settings: SettingsDep, address: ClientAddress
) -> UserPublic:
    """Create an account. Anyone may sign up; the email is stored normalised (NFKC, lower
    case) and must not be taken in any letter case. The password is {password_min} to
    {password_max} characters, not one of the most common passwords, and not the email or
    its local part. New accounts are active customers, never admins.

    At most {signup_max_per_hour} signups per hour from one client address; past that, 429
    with `Retry-After`.
    """
    return await auth_service.sign_up(database, settings, body, address)


@router.post("/login", responses=responses(401, 403, 429), dependencies=[NoStore])
async def login(body: LoginRequest, database: DatabaseDep, settings: SettingsDep) -> TokenPair:
    """Exchange email and password for an access token ({access_token_lifetime}) and a refresh
    token ({refresh_token_lifetime}).

    A wrong password and an unknown email get the same 401. After {login_max_failures} failed
    attempts for one email within {login_window} every attempt gets 429, even with the right
    password, with `Retry-After` in seconds; a successful login clears the count. A
    deactivated account gets 403.
    """
    return await auth_service.log_in(database, settings, body.email, body.password)


@router.post(
    "/login-form",
    summary="Log in (OAuth2 password form)",
    responses=responses(401, 403, 429),
    dependencies=[NoStore],
)
async def login_form(
    form: Annotated[LoginForm, Form()], database: DatabaseDep, settings: SettingsDep
) -> TokenPair:
    """The same as `POST /auth/login`, as the OAuth2 password flow: a form with `username` (the
    email) and `password`. Swagger's **Authorize** button uses this route.
    """
    return await auth_service.log_in(database, settings, form.username, form.password)


@router.post("/refresh", responses=responses(401), dependencies=[NoStore])
async def refresh(body: RefreshRequest, database: DatabaseDep, settings: SettingsDep) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once: the one presented
    is spent. Presenting a spent token again means it leaked, so every token issued from it
    since is revoked as well.
    """
    return await auth_service.refresh(database, settings, body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401))
async def logout(body: RefreshRequest, database: DatabaseDep, settings: SettingsDep) -> Response:
    """Revoke a refresh token. Logging out a token that is already spent or revoked also
    succeeds; a forged, malformed or expired one is 401. Access tokens expire on their own.
    """
    await auth_service.log_out(database, settings, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", summary="Current user", responses=responses(401))
async def me(user: CurrentUser) -> UserPublic:
    """The account the access token belongs to. A deactivated account is refused at once, not
    only at its next login.
    """
    return user


@router.post(
    "/change-password", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 429)
)
async def change_password(
    body: PasswordChange, user: CurrentUser, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Set a new password ({password_min} to {password_max} characters, not a common one, not
    the email) after proving the current one. Every refresh token of the account is revoked,
    so other sessions must log in again. Wrong current passwords count like failed logins:
    past {login_max_failures} within {login_window}, 429 with `Retry-After`.
    """
    await auth_service.change_password(
        database, settings, user, body.current_password, body.new_password
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED, responses=responses(429))
async def request_password_reset(
    body: PasswordResetRequest,
    database: DatabaseDep,
    settings: SettingsDep,
    address: ClientAddress,
    background: BackgroundTasks,
) -> Notice:
    """Ask for a password reset email. The answer is the same, and comes as fast, whether or
    not the email has an account; when it has an active one, a message with a reset token
    and a link goes to it after the answer. The token works once, for
    {password_reset_lifetime}, and only the newest one requested works.

    At most {password_reset_max_per_hour} requests per hour for one email, and as many from
    one client address; past that, 429 with `Retry-After`.
    """
    await password_reset.request_reset(database, settings, body.email, address)
    background.add_task(password_reset.send_reset_email, database, settings, body.email)
    return Notice(detail=password_reset.REQUESTED)


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(400),
)
async def confirm_password_reset(
    body: PasswordResetConfirm, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Set a new password ({password_min} to {password_max} characters, not a common one, not
    the email) with the token from a password reset email. The token is spent; every
    refresh token of the account is revoked and its failed logins are forgotten. An unknown,
    expired, used or replaced token is 400.
    """
    await password_reset.confirm_reset(database, settings, body.token, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users", responses=responses(401, 403))
async def list_users(
    _admin: AdminUser, database: DatabaseDep, page: Pagination
) -> Page[UserPublic]:
    """Admins only: every account, oldest first, a page at a time."""
    users, total = await database.read(
        auth_service.list_users, limit=page.limit, offset=page.offset
    )
    return Page[UserPublic](items=users, total=total, limit=page.limit, offset=page.offset)


@router.patch("/users/{user_id}", responses=responses(401, 403, 404, 409))
async def update_user(
    user_id: PathId, body: UserUpdate, admin: AdminUser, database: DatabaseDep
) -> UserPublic:
    """Admins only: activate or deactivate an account, or grant or remove admin rights. A
    deactivated user's tokens stop working at once. Admins cannot remove their own admin or
    active flag (409), so there is always an admin.
    """
    return await database.write(auth_service.update_user, admin, user_id, body)
