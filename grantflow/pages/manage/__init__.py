"""The admins' management pages: programmes (create, correct), council sessions (open,
decide, close), report reviews, pilots (plan, evaluator, decision) and users (invite, role,
deactivate). Each action is a form that works without JavaScript, with a required reason
where the service takes one and a confirmation step before what cannot be undone."""

from fastapi import APIRouter

from grantflow.pages.manage import pilot, programme, report, session, user

router = APIRouter(include_in_schema=False)
for module in (programme, session, report, pilot, user):
    router.include_router(module.router)
