"""Formation logic: desired vs actual, scale validation, rollback targets, pruning."""

import pytest

from slipway.platform.errors import BadRequest, InvalidInput, NotFound
from slipway.platform.formation import (
    ScalePlan,
    desired_scale,
    images_to_prune,
    plan_scale,
    process_types,
    rollback_target,
    validate_scale,
)

PROCS = {"web": "gunicorn app:app", "worker": "python worker.py", "release": "migrate",
         "clock": "python clock.py"}


def test_process_types_put_web_first_and_leave_release_out():
    assert process_types(PROCS) == ["web", "clock", "worker"]
    # A Dockerfile app without a Procfile still has a web process (the image's CMD).
    assert process_types({}) == ["web"]


def test_every_type_runs_one_container_until_scaled():
    assert desired_scale(PROCS, {}) == {"web": 1, "clock": 1, "worker": 1}
    assert desired_scale(PROCS, {"worker": 0, "web": 3, "gone": 2}) == {
        "web": 3, "clock": 1, "worker": 0}


def test_plan_starts_missing_and_stops_surplus_and_removed_types():
    plan = plan_scale({"web": 2, "worker": 1},
                      {"web": ["w1", "w2", "w3"], "worker": [], "clock": ["c1"]})
    assert plan == ScalePlan(start={"worker": 1}, stop=["c1", "w3"])
    assert plan_scale({"web": 3}, {"web": ["w1"]}) == ScalePlan(start={"web": 2}, stop=[])
    assert plan_scale({"web": 1}, {"web": ["w1"]}) == ScalePlan(start={}, stop=[])


def test_plan_replaces_restarted_types_entirely():
    plan = plan_scale({"web": 2, "worker": 1}, {"web": ["w1", "w2"], "worker": ["k1"]},
                      replace=["web"])
    assert plan == ScalePlan(start={"web": 2}, stop=["w1", "w2"])


def test_valid_scales_pass():
    assert validate_scale({"web": 2, "worker": 0}, ["web", "worker"], 10) == {
        "web": 2, "worker": 0}
    assert validate_scale({"web": 10}, ["web"], 10) == {"web": 10}


@pytest.mark.parametrize(("body", "message", "field"), [
    ({"wokrer": 1}, "Unknown process type 'wokrer': this app has web, worker", "wokrer"),
    ({"x; rm -rf /": 1}, "Unknown process type 'process type': this app has web, worker",
     "process type"),
    ({"release": 1}, "release is not a scalable process type", "release"),
    ({"web": 11}, "Scale of web is above the limit of 10", "web"),
    ({"web": -1}, "Scale of web must be a whole number from 0 to 10", "web"),
    ({"web": 1.5}, "Scale of web must be a whole number from 0 to 10", "web"),
    ({"web": "2"}, "Scale of web must be a whole number from 0 to 10", "web"),
    ({"web": True}, "Scale of web must be a whole number from 0 to 10", "web"),
])
def test_bad_scales_are_refused_naming_the_type(body, message, field):
    with pytest.raises(InvalidInput) as info:
        validate_scale(body, ["web", "worker"], 10)
    assert info.value.message == message
    assert info.value.field == field


@pytest.mark.parametrize("body", [{}, [], "web=2", None])
def test_scale_bodies_must_be_objects(body):
    with pytest.raises(BadRequest):
        validate_scale(body, ["web"], 10)


STATUSES = {1: "succeeded", 2: "succeeded", 3: "failed", 4: "succeeded"}


def test_rollback_defaults_to_the_last_good_release_before_the_current():
    assert rollback_target(STATUSES, 4, None) == 2
    assert rollback_target(STATUSES, 4, 1) == 1


@pytest.mark.parametrize(("current", "requested", "error", "message"), [
    (4, 9, NotFound, "No release v9"),
    (4, 4, InvalidInput, "v4 is the current release"),
    (4, 3, InvalidInput, "v3 never deployed: roll back to a release that did"),
    (1, None, NotFound, "No earlier release to roll back to"),
    (None, None, InvalidInput, "The app has no release to roll back from: push it first"),
])
def test_bad_rollbacks_are_refused(current, requested, error, message):
    with pytest.raises(error) as info:
        rollback_target(STATUSES, current, requested)
    assert info.value.message == message


def test_pruning_keeps_recent_current_previous_and_used_images():
    releases = [(1, "img-a"), (2, "img-b"), (3, "img-b"), (4, "img-c"), (5, "img-d"),
                (6, "img-e"), (7, "img-e")]
    # keep=2: v7 and v6 (both img-e); current v7, previous v5 (a rollback target).
    assert images_to_prune(releases, current=7, previous=5, keep=2, in_use=[]) == {
        "img-a", "img-b", "img-c"}
    assert images_to_prune(releases, current=7, previous=5, keep=2, in_use=["img-a"]) == {
        "img-b", "img-c"}


def test_an_image_shared_with_a_kept_release_stays():
    # Config changes share one image: v1's image is v3's too, and v3 is kept.
    releases = [(1, "img-a"), (2, "img-b"), (3, "img-a")]
    assert images_to_prune(releases, current=3, previous=2, keep=1, in_use=[]) == set()


def test_a_rollback_keeps_the_current_image_even_when_old():
    releases = [(1, "img-a"), (2, "img-b"), (3, "img-c"), (4, "img-a")]
    assert images_to_prune(releases, current=4, previous=3, keep=0, in_use=[]) == {"img-b"}
