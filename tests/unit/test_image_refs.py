from slipway.builder.image_refs import ImageReference, image_references


def refs(text):
    return [(r.line, r.instruction, r.reference) for r in image_references(text)]


def test_from_and_copy_from_name_images_but_not_stages():
    text = (
        "FROM python:3.12-slim AS build\n"
        "RUN pip wheel .\n"
        "FROM --platform=linux/amd64 slipway/python:3.11\n"
        "COPY --from=build /w /w\n"
        "COPY --from=0 /w /x\n"
        "COPY --from=slipway-app/0123:abcd /etc/secret /s\n"
        "ADD --chown=1:1 --from=other:1 /a /b\n"
        "RUN --mount=type=bind,from=victim:2,target=/v cat /v/x\n"
        "ONBUILD COPY --from=sneaky /a /b\n"
    )
    assert refs(text) == [
        (1, "FROM", "python:3.12-slim"),
        (3, "FROM", "slipway/python:3.11"),
        (6, "COPY --from", "slipway-app/0123:abcd"),
        (7, "ADD --from", "other:1"),
        (8, "RUN --mount", "victim:2"),
        (9, "COPY --from", "sneaky"),
    ]


def test_global_args_are_expanded_with_their_defaults():
    text = (
        'ARG BASE="slipway-app/x:y"\n'
        "ARG EMPTY=\n"
        "ARG UNSET\n"
        "FROM $BASE\n"
        "FROM ${BASE}-suffix\n"
        "FROM ${UNSET:-fallback:1}\n"
        "FROM ${EMPTY:-colon:1}\n"
        "FROM ${EMPTY-dash:1}x\n"
        "FROM ${BASE:+plus:1}\n"
    )
    assert [r[2] for r in refs(text)] == [
        "slipway-app/x:y", "slipway-app/x:y-suffix", "fallback:1", "colon:1", "x", "plus:1"]


def test_continuations_comments_and_the_escape_directive():
    text = (
        "# escape=`\n"
        "\n"
        "FROM `\n"
        "  # a comment inside the instruction\n"
        "  busybox AS one\n"
        "COPY `\n"
        "  --from=hidden:1 /a /b\n"
    )
    assert image_references(text) == [ImageReference(3, "FROM", "busybox"),
                                      ImageReference(6, "COPY --from", "hidden:1")]


def test_a_stage_named_after_a_later_image_is_still_a_stage_only_once_defined():
    text = "FROM victim:1\nFROM alpine AS victim\nCOPY --from=victim /a /b\n"
    assert refs(text) == [(1, "FROM", "victim:1"), (2, "FROM", "alpine")]
