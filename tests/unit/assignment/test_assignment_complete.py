"""Completing interactive items and deciding approvals."""

from __future__ import annotations

from assignment_builders import (
    FORM,
    LATER,
    VALID_VALUES,
    accepted,
    given,
    rejected,
    request,
    then,
    types_of,
)

from contracts.events.workitems import WorkItemCanceled, WorkItemCompleted
from services.assignment.core import (
    Approve,
    Cancel,
    Claim,
    Complete,
    Delegate,
    FieldError,
    Reject,
    Status,
    apply,
)


def test_the_assignee_completes_the_form_and_the_step_completes_with_its_values() -> None:
    item = given(request("user", "ann", form=FORM))

    decision = accepted(item, Complete("ann", VALID_VALUES))

    assert types_of(decision) == ["WorkItemCompleted"]  # it is the step's outcome too
    (completed,) = decision.events
    assert isinstance(completed, WorkItemCompleted)
    assert (completed.step, completed.attempt, completed.outputs, completed.actor) == (
        "collect",
        1,
        VALID_VALUES,
        "ann",
    )
    after = then(item, decision)
    assert (after.status, after.completed_by, after.outputs) == (
        Status.COMPLETED,
        "ann",
        VALID_VALUES,
    )


def test_invalid_values_are_refused_field_by_field() -> None:
    item = given(request("user", "ann", form=FORM))

    rejection = rejected(item, Complete("ann", {"start_date": "soon", "laptop": {}}))

    assert rejection.code == "invalid"
    assert rejection.errors == (
        FieldError("laptop.model", "is required"),
        FieldError("start_date", "'soon' is not a 'date'"),
    )


def test_without_a_form_any_object_is_accepted() -> None:
    item = given(request("user", "ann"))

    decision = accepted(item, Complete("ann", {"anything": [1, 2]}))

    done = decision.events[-1]
    assert isinstance(done, WorkItemCompleted)
    assert (done.step, done.attempt, done.outputs, done.actor) == (
        "collect", 1, {"anything": [1, 2]}, "ann")


def test_a_member_completing_an_unclaimed_group_item_claims_it_in_passing() -> None:
    item = given(request("group", "hr"))

    decision = accepted(item, Complete("bob", {}))

    assert types_of(decision) == ["WorkItemClaimed", "WorkItemCompleted"]
    after = then(item, decision)
    assert (after.status, after.claimed_by, after.completed_by) == (Status.COMPLETED, "bob", "bob")


def test_the_claimer_completes_a_claimed_group_item() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    assert types_of(accepted(item, Complete("ann", {}))) == ["WorkItemCompleted"]


def test_another_member_cannot_complete_an_item_claimed_by_someone_else() -> None:
    item = given(request("group", "hr"), Claim("ann"))

    rejection = rejected(item, Complete("bob", {}))

    assert (rejection.code, rejection.reason) == ("forbidden", "the work item is claimed by 'ann'")


def test_the_delegate_may_complete_and_so_may_the_owner() -> None:
    item = given(request("user", "ann"), Delegate("ann", "gary"))

    assert types_of(accepted(item, Complete("gary", {})))[0] == "WorkItemCompleted"
    assert types_of(accepted(item, Complete("ann", {})))[0] == "WorkItemCompleted"


def test_another_user_cannot_complete_my_item() -> None:
    item = given(request("user", "ann"))

    assert rejected(item, Complete("bob", {})).code == "not_found"


def test_an_admin_sees_but_cannot_complete_someone_elses_item() -> None:
    item = given(request("user", "ann"))

    rejection = rejected(item, Complete("dave", {}))

    assert (rejection.code, rejection.reason) == (
        "forbidden",
        "'dave' may not complete this work item",
    )


def test_a_completed_item_cannot_be_completed_again() -> None:
    item = given(request("user", "ann"), Complete("ann", {}))

    rejection = rejected(item, Complete("ann", {}))

    assert (rejection.code, rejection.reason) == (
        "conflict",
        "cannot complete a completed work item",
    )


def test_a_canceled_item_cannot_be_completed() -> None:
    item = given(request("user", "ann"), Cancel("run canceled"))

    refused = rejected(item, Complete("ann", {}))
    assert (refused.code, refused.reason) == (
        "conflict", "the work item was canceled: run canceled")


def test_a_completion_the_run_never_applied_is_withdrawn_and_its_author_told() -> None:
    """Regression: a cancel racing a completion left the item completed (the person told
    "Done") while the run was canceled and never used the answer."""
    item = given(request("user", "ann"), Complete("ann", {"x": 1}))

    decision = accepted(item, Cancel("the run was canceled"))

    (canceled,) = decision.events
    assert isinstance(canceled, WorkItemCanceled)
    assert canceled.recipients == ["ann"]
    assert canceled.reason == "your answer was not used: the run was canceled"
    withdrawn = apply(item, decision, LATER)
    assert withdrawn is not None and withdrawn.status == "canceled"
    assert withdrawn.cancel_reason == "your answer was not used: the run was canceled"
    assert withdrawn.outputs == {"x": 1}  # kept, with the history of what was answered
    assert rejected(withdrawn, Cancel("again")).reason == "cannot cancel a canceled work item"


def test_approving_completes_with_the_decision_as_outputs() -> None:
    item = given(request("manager_of", "ann", step_kind="approval"))

    decision = accepted(item, Approve("carol", "fine by me"))

    (completed,) = decision.events
    assert isinstance(completed, WorkItemCompleted)
    assert (completed.decision, completed.comment) == ("approved", "fine by me")
    assert completed.outputs == {"decision": "approved", "comment": "fine by me"}
    after = then(item, decision)
    assert (after.status, after.decision, after.comment) == (
        Status.COMPLETED,
        "approved",
        "fine by me",
    )


def test_rejecting_completes_with_a_rejected_decision() -> None:
    item = given(request("manager_of", "ann", step_kind="approval"))

    decision = accepted(item, Reject("carol", "budget"))

    step = decision.events[-1]
    assert isinstance(step, WorkItemCompleted)
    assert step.outputs == {"decision": "rejected", "comment": "budget"}
    assert then(item, decision).decision == "rejected"


def test_an_approval_is_not_completed_with_a_form() -> None:
    item = given(request("user", "ann", step_kind="approval"))

    rejection = rejected(item, Complete("ann", {}))

    assert rejection.code == "invalid"
    assert rejection.reason == "an approval work item is approved or rejected, not completed"


def test_an_interactive_item_is_not_approved_or_rejected() -> None:
    item = given(request("user", "ann"))

    assert rejected(item, Approve("ann")).reason == "only an approval work item can be approved"
    assert rejected(item, Reject("ann")).reason == "only an approval work item can be rejected"


def test_an_overlong_approval_comment_is_refused() -> None:
    item = given(request("user", "ann", step_kind="approval"))

    assert rejected(item, Approve("ann", "x" * 4001)).code == "invalid"


def test_only_the_approver_may_approve() -> None:
    item = given(request("user", "carol", step_kind="approval"))

    assert rejected(item, Approve("ann")).code == "not_found"


APPROVAL_FORM = {
    "type": "object",
    "required": ["po_number"],
    "required_on_reject": ["redlines"],
    "properties": {"po_number": {"type": "string"}, "redlines": {"type": "string"},
                   "seats": {"type": "integer"}},
}


def test_an_approval_form_is_checked_and_its_values_reach_the_outputs_and_history() -> None:
    item = given(request("user", "carol", step_kind="approval", form=APPROVAL_FORM))

    missing = rejected(item, Approve("carol", "ok"))
    decision = accepted(item, Approve("carol", "ok", {"po_number": "PO-7", "seats": 3}))

    assert (missing.code, missing.errors) == ("invalid", (FieldError("po_number", "is required"),))
    step = decision.events[-1]
    assert isinstance(step, WorkItemCompleted)
    assert step.outputs == {"po_number": "PO-7", "seats": 3, "decision": "approved",
                            "comment": "ok"}
    after = then(item, decision)
    assert after.outputs == step.outputs
    assert [e.new for e in after.history if e.field == "outputs"] == [step.outputs]


def test_rejecting_requires_only_the_fields_the_form_names_for_a_rejection() -> None:
    item = given(request("user", "carol", step_kind="approval", form=APPROVAL_FORM))

    missing = rejected(item, Reject("carol", "no"))
    mistyped = rejected(item, Reject("carol", "no", {"redlines": "x", "seats": "many"}))
    decision = accepted(item, Reject("carol", "no", {"redlines": "clause 7"}))

    assert missing.errors == (FieldError("redlines", "is required"),)
    assert [e.field for e in mistyped.errors] == ["seats"]
    step = decision.events[-1]
    assert isinstance(step, WorkItemCompleted)
    assert step.outputs == {"redlines": "clause 7", "decision": "rejected", "comment": "no"}


def test_without_required_on_reject_a_rejection_needs_no_field() -> None:
    form = {k: v for k, v in APPROVAL_FORM.items() if k != "required_on_reject"}
    item = given(request("user", "carol", step_kind="approval", form=form))

    assert accepted(item, Reject("carol", "no")).events[-1].outputs == {  # type: ignore[union-attr]
        "decision": "rejected", "comment": "no"}


def test_the_verdict_outputs_are_the_approvals_own() -> None:
    item = given(request("user", "carol", step_kind="approval"))

    step = accepted(item, Approve("carol", "yes", {"decision": "rejected"})).events[-1]

    assert isinstance(step, WorkItemCompleted)
    assert step.outputs["decision"] == "approved"


def test_the_runs_starter_hears_that_the_item_is_done() -> None:
    """Whoever started the run is told, with how to reach them; notification leaves out the
    one who did it, so a starter completing their own item hears nothing."""
    item = given(request("user", "ann", form=FORM).model_copy(update={"started_by": "carol"}))

    completed = accepted(item, Complete("ann", VALID_VALUES)).events[0]

    assert isinstance(completed, WorkItemCompleted)
    assert completed.actor == "ann" and completed.recipients == ["ann", "carol"]
    assert [(c.user, c.email) for c in completed.contacts if c.user == "carol"] == [
        ("carol", "carol@example.com")]
    unstarted = given(request("user", "ann", form=FORM))
    assert accepted(unstarted, Complete("ann", VALID_VALUES)).events[0].recipients == ["ann"]
