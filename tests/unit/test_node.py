"""Node.js: detection, npm version ranges, base image choice, the rendered Dockerfile.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_node.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from slipway.builder import images
from slipway.builder.build import CONTEXT_DOCKERFILE, build_context
from slipway.builder.detect import NO_NODE_WEB_PROCESS, detect
from slipway.builder.dockerfile import render_node_dockerfile
from slipway.builder.images import choose_node_major, resolve_base_images
from slipway.builder.plan import BuildError, BuildPlan, NothingToBuild
from slipway.builder.semver import RangeError, admits_major

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dockerfile"
BASE = "slipway/node:20"
BUILD = "slipway/node:20-build"
LABELS = {"slipway.managed": "1", "slipway.app": "demo"}


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def package(**fields) -> str:
    return json.dumps({"name": "demo", "version": "1.0.0", **fields})


def error_of(root: Path) -> str:
    with pytest.raises(BuildError) as info:
        detect(root)
    return info.value.message


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


# ------------------------------------------------------------------ detection


def test_npm_express_fixture():
    plan = detect(FIXTURES / "node_express")
    assert plan.stack == "node"
    assert plan.installer == "npm"
    assert plan.dependency_files == ("package.json", "package-lock.json")
    assert plan.runtime_version == ">=18"
    assert plan.processes == {"web": "npm start"}
    assert not plan.build_script
    assert plan.notes == (
        "Installing dependencies from package-lock.json with npm ci",
        'Node version from engines.node in package.json: ">=18"',
        "No Procfile: web process is `npm start`",
    )


def test_pnpm_fixture_with_a_build_script():
    plan = detect(FIXTURES / "node_pnpm")
    assert (plan.installer, plan.installer_version) == ("pnpm", None)
    assert plan.dependency_files == ("package.json", "pnpm-lock.yaml")
    assert plan.build_script
    assert plan.runtime_version is None
    assert plan.notes[0] == "Installing dependencies from pnpm-lock.yaml with pnpm"
    assert plan.notes[1] == (
        "Running the build script (pnpm run build) after the code is copied, "
        "with devDependencies, which are pruned afterwards"
    )


def test_yarn_fixture_defaults_to_index_js():
    plan = detect(FIXTURES / "node_yarn")
    assert plan.installer == "yarn"
    assert plan.dependency_files == ("package.json", "yarn.lock")
    assert plan.processes == {"web": "node index.js"}


def test_no_lockfile_is_npm_install(tmp_path):
    tree(tmp_path, {"package.json": package(), "server.js": ""})
    plan = detect(tmp_path)
    assert plan.installer == "npm"
    assert plan.dependency_files == ("package.json",)
    assert plan.notes[0] == (
        "Installing dependencies from package.json with npm install "
        "(no lock file: versions are resolved now)"
    )


def test_shrinkwrap_and_config_files_are_dependency_files(tmp_path):
    tree(tmp_path, {"package.json": package(), "npm-shrinkwrap.json": "{}", ".npmrc": "x=1\n",
                    "app.js": ""})
    plan = detect(tmp_path)
    assert plan.dependency_files == ("package.json", "npm-shrinkwrap.json", ".npmrc")
    assert plan.processes == {"web": "node app.js"}


def test_package_manager_field_wins_over_the_lockfile(tmp_path):
    tree(tmp_path, {"package.json": package(packageManager="pnpm@8.15.4+sha256.abc"),
                    "package-lock.json": "{}", "index.js": ""})
    plan = detect(tmp_path)
    assert (plan.installer, plan.installer_version) == ("pnpm", "8.15.4")
    assert plan.notes[0] == "Installing dependencies from package-lock.json with pnpm"
    assert "Package manager from packageManager in package.json: pnpm@8.15.4" in plan.notes


@pytest.mark.parametrize(
    ("files", "version"),
    [({".yarnrc.yml": "nodeLinker: node-modules\n"}, None),
     ({}, "4.1.1")],
)
def test_yarn_berry(tmp_path, files, version):
    fields = {"packageManager": f"yarn@{version}"} if version else {}
    tree(tmp_path, {"package.json": package(**fields), "yarn.lock": "", "index.js": "", **files})
    plan = detect(tmp_path)
    assert (plan.installer, plan.installer_version) == ("yarn-berry", version)
    assert plan.processes == {"web": "yarn node index.js"}  # Plug'n'Play needs yarn


def test_a_yarn_1_pin_is_classic_even_with_a_yarnrc_yml(tmp_path):
    tree(tmp_path, {"package.json": package(packageManager="yarn@1.22.22"), "yarn.lock": "",
                    ".yarnrc.yml": "", "index.js": ""})
    plan = detect(tmp_path)
    assert (plan.installer, plan.installer_version) == ("yarn", "1.22.22")
    assert plan.processes == {"web": "node index.js"}


def test_berry_copies_its_committed_release(tmp_path):
    tree(tmp_path, {"package.json": package(), "yarn.lock": "", "index.js": "",
                    ".yarnrc.yml": "yarnPath: .yarn/releases/yarn-4.1.1.cjs\n",
                    ".yarn/releases/yarn-4.1.1.cjs": "// yarn"})
    plan = detect(tmp_path)
    assert plan.dependency_files == ("package.json", "yarn.lock", ".yarnrc.yml", ".yarn/releases")


def test_web_process_from_main_then_procfile(tmp_path):
    tree(tmp_path, {"package.json": package(main="lib/web"), "lib/web.js": "", "index.js": ""})
    assert detect(tmp_path).processes == {"web": "node lib/web.js"}
    tree(tmp_path, {"Procfile": "worker: node worker.js\n"})
    assert detect(tmp_path).processes == {"web": "node lib/web.js", "worker": "node worker.js"}
    tree(tmp_path, {"Procfile": "web: node cluster.js\n"})
    assert detect(tmp_path).processes == {"web": "node cluster.js"}


def test_python_wins_over_a_package_json_for_assets(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "Procfile": "web: gunicorn app:app\n",
                    "package.json": package()})
    assert detect(tmp_path).stack == "python"


def test_nothing_to_build_mentions_package_json(tmp_path):
    with pytest.raises(NothingToBuild, match=r"Pipfile or package\.json found at the top"):
        detect(tmp_path)


# ------------------------------------------------------------------ bad input


def test_missing_start_script_and_main_file(tmp_path):
    tree(tmp_path, {"package.json": package(main="missing.js"), "lib.js": ""})
    assert error_of(tmp_path) == NO_NODE_WEB_PROCESS
    assert NO_NODE_WEB_PROCESS == (
        'No web process: add a Procfile with a `web:` line, a "start" script in package.json, '
        'or a main file (looked for "main" in package.json, server.js, index.js and app.js)'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "package.json is not valid JSON: Expecting property name enclosed in "
                   "double quotes: line 1 column 2 (char 1)"),
     ("[1, 2]", "package.json must hold a JSON object"),
     ('{"scripts": "npm start"}', 'package.json: "scripts" must be an object'),
     ('{"engines": {"node": 20}}',
      'package.json: "engines.node" must be a version range such as ">=18"'),
     ('{"packageManager": "bun@1.0.0"}',
      'package.json: "packageManager" must be npm, yarn or pnpm with a version such as '
      '"pnpm@9.1.0", not "bun@1.0.0"'),
     ('{"packageManager": "pnpm@latest; rm -rf /"}',
      'package.json: "packageManager" must be npm, yarn or pnpm with a version such as '
      '"pnpm@9.1.0", not "pnpm@latest; rm -rf /"')],
)
def test_malformed_package_json(tmp_path, text, message):
    tree(tmp_path, {"package.json": text, "index.js": ""})
    assert error_of(tmp_path) == message


@pytest.mark.parametrize("lockfile", ["package-lock.json", "yarn.lock", "pnpm-lock.yaml"])
def test_lockfile_without_package_json(tmp_path, lockfile):
    tree(tmp_path, {lockfile: "{}", "index.js": ""})
    assert error_of(tmp_path) == f"{lockfile} found without package.json: commit package.json too"


def test_package_json_linked_outside_the_repository(tmp_path):
    outside = tree(tmp_path / "outside", {"package.json": package()})
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "package.json").symlink_to(outside / "package.json")
    assert error_of(repo) == "package.json is a link to a file outside the repository"


# ------------------------------------------------------------------ npm ranges


@pytest.mark.parametrize(
    ("spec", "majors"),
    [(">=18", {18, 20, 22}), ("^20", {20}), ("20.x", {20}), ("18 || 20", {18, 20}),
     ("lts/*", {16, 18, 20, 22}), ("*", {16, 18, 20, 22}), ("", {16, 18, 20, 22}),
     (">=18.17 <21", {18, 20}), ("16 - 20", {16, 18, 20}), ("~18.19.0", {18}),
     (">20", {22}), (">20.1", {20, 22}), ("<=18", {16, 18}), ("<18", {16}),
     (">= 18 < 20", {18}), ("v20.11.1", {20}), ("=18.0.0", {18}), ("^0.10", set()),
     (">=22", {22}), ("18.x || >=22", {18, 22}), ("^18.0.0-rc.1", {18})],
)
def test_admits_major(spec, majors):
    assert {m for m in (16, 18, 20, 22) if admits_major(spec, m)} == majors


@pytest.mark.parametrize("spec", ["banana", ">=18 <", "18.a", "^^20", ">=$(id)"])
def test_unreadable_ranges(spec):
    with pytest.raises(RangeError):
        admits_major(spec, 20)


def test_choose_node_major_prefers_the_default_then_the_highest():
    assert choose_node_major([18, 20], None, 20) == 20
    assert choose_node_major([18, 20], ">=18", 20) == 20
    assert choose_node_major([18, 20, 22], ">=21", 20) == 22
    assert choose_node_major([18, 20], "^18", 20) == 18
    assert choose_node_major([18, 20], ">=22", 20) is None
    assert choose_node_major([], None, 20) is None


def test_unreadable_engines_is_a_build_error():
    with pytest.raises(BuildError) as info:
        choose_node_major([18, 20], "banana", 20)
    assert info.value.message == (
        'engines.node "banana" in package.json is not a version range '
        "(not a version: 'banana'): write one such as \">=20\" or \"22.x\""
    )


class FakeImage:
    def __init__(self, tags):
        self.tags = tags


class FakeImages:
    def __init__(self, references):
        self.references = references

    def list(self, name):
        return [FakeImage([r]) for r in self.references if r.startswith(name + ":")]

    def get(self, reference):
        from docker.errors import ImageNotFound

        if reference not in self.references:
            raise ImageNotFound(reference)
        return FakeImage([reference])


class FakeClient:
    def __init__(self, *references):
        self.images = FakeImages(list(references))


def resolve(client, engines, on_demand=None):
    return resolve_base_images(client, "node:{version}-slim", "node:{version}", engines, "24",
                               "slipway", "node", on_demand=on_demand)


BOOTSTRAPPED = ("slipway/node:18", "slipway/node:20", "slipway/node:20-build", "slipway/node:24",
                "slipway/node:24-build", "slipway/python:3.11")


def test_resolve_node_from_bootstrap_images():
    client = FakeClient(*BOOTSTRAPPED)
    assert resolve(client, "^20") == (
        "slipway/node:20", "slipway/node:20-build", ['Using slipway/node:20 (engines.node "^20")'])
    assert resolve(client, None) == (
        "slipway/node:24", "slipway/node:24-build",
        ["Using slipway/node:24 (Node 24 is the default)"])
    # Node 18 is past its end of life: never chosen, even when its image is there.
    assert resolve(client, ">=18")[0] == "slipway/node:24"


def test_a_runtime_image_without_its_build_image_installs_on_the_runtime_image():
    run, build, notes = resolve(FakeClient("slipway/node:20"), "20.x")
    assert (run, build) == ("slipway/node:20", "slipway/node:20")
    assert notes[-1] == ("slipway/node:20-build is not on this host: installing on "
                         "slipway/node:20 (run `slipway images bootstrap --kind node20-build` "
                         "to build addons)")


def test_a_major_the_host_can_build_is_built_on_demand(monkeypatch):
    built = []
    monkeypatch.setattr(images, "_build_on_demand",
                        lambda client, kinds, repository, on_demand, what: built.append(kinds))
    on_demand = images.OnDemand(mirror="http://m", log=print)
    assert resolve(FakeClient(*BOOTSTRAPPED), "22.x", on_demand)[:2] == (
        "slipway/node:22", "slipway/node:22-build")
    assert built == [["node22-build"]]
    # Without on-demand builds, only what is there counts.
    with pytest.raises(BuildError, match='cannot be met: this host builds Node 20, 24$'):
        resolve(FakeClient(*BOOTSTRAPPED), "22.x")


def test_resolve_node_prefers_template_images():
    client = FakeClient("node:22-slim", "slipway/node:20")
    assert resolve(client, ">=22")[:2] == ("node:22-slim", "node:22")


@pytest.mark.parametrize(("engines", "message"), [
    (">=26", 'engines.node ">=26" cannot be met: this host builds Node 20, 24'),
    ("16.x", 'engines.node "16.x" asks for Node 16, which reached its end of life: '
             "this host builds Node 20, 24"),
    ("^18.17", 'engines.node "^18.17" asks for Node 18, which reached its end of life: '
               "this host builds Node 20, 24"),
])
def test_impossible_or_end_of_life_engines_are_refused_with_what_the_host_has(engines, message):
    with pytest.raises(BuildError) as info:
        resolve(FakeClient(*BOOTSTRAPPED), engines)
    assert info.value.message == message


def test_no_images_at_all_falls_back_to_pulling_the_template():
    run, build, notes = resolve(FakeClient(), "^22")
    assert (run, build) == ("node:22-slim", "node:22")
    assert notes == [
        "node:22-slim is not on this host: Docker will pull it (on hosts without a registry, "
        "run `slipway images bootstrap` for a local Node.js image)"
    ]
    with pytest.raises(BuildError, match=r'^engines.node "\^12" asks for Node 12, which reached '
                                         r"its end of life: this host builds Node 20, 22, 24$"):
        resolve(FakeClient(), "^12")


# ------------------------------------------------------------------ Dockerfile

PLANS: dict[str, BuildPlan] = {
    "node_npm_ci": BuildPlan(stack="node", installer="npm",
                             dependency_files=("package.json", "package-lock.json", ".npmrc")),
    "node_npm_install_build": BuildPlan(stack="node", installer="npm",
                                        dependency_files=("package.json",), build_script=True),
    "node_yarn": BuildPlan(stack="node", installer="yarn",
                           dependency_files=("package.json", "yarn.lock")),
    "node_yarn_build": BuildPlan(stack="node", installer="yarn", installer_version="1.22.22",
                                 dependency_files=("package.json", "yarn.lock"),
                                 build_script=True),
    "node_yarn_berry": BuildPlan(
        stack="node", installer="yarn-berry",
        dependency_files=("package.json", "yarn.lock", ".yarnrc.yml", ".yarn/releases")),
    "node_yarn_berry_corepack": BuildPlan(stack="node", installer="yarn-berry",
                                          installer_version="4.1.1",
                                          dependency_files=("package.json", "yarn.lock"),
                                          build_script=True),
    "node_pnpm_build": BuildPlan(stack="node", installer="pnpm",
                                 dependency_files=("package.json", "pnpm-lock.yaml"),
                                 build_script=True),
    "node_pnpm_pinned": BuildPlan(stack="node", installer="pnpm", installer_version="8.15.4",
                                  dependency_files=("package.json", "pnpm-lock.yaml")),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_golden(name):
    rendered = render_node_dockerfile(PLANS[name], BASE, LABELS, BUILD)
    path = GOLDEN / f"{name}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text()


def instructions(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_layer_order(name):
    plan = PLANS[name]
    steps = instructions(render_node_dockerfile(plan, BASE, {}))
    code = steps.index("COPY --chown=10001:10001 . .")
    deps = next(i for i, s in enumerate(steps) if s.startswith('COPY ["package.json"'))
    install = next(i for i, s in enumerate(steps) if s.startswith("RUN") and i > deps)
    assert deps < install < code
    assert steps[-1] == "USER 10001"
    # The build script runs after the code copy, then devDependencies go.
    if plan.build_script:
        assert steps[code + 1].startswith(("RUN npm run build", "RUN pnpm run build",
                                           "RUN yarn build"))
    else:
        assert steps[code + 1] == "USER 10001"
    assert "NODE_ENV=production" in steps[1]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_addons_compile_in_the_build_stage_and_only_its_results_reach_the_run_stage(name):
    steps = instructions(render_node_dockerfile(PLANS[name], BASE, {}, BUILD))
    second = [i for i, step in enumerate(steps) if step.startswith("FROM ")][1]
    build, run = steps[:second], steps[second:]
    assert build[0] == f"FROM {BUILD} AS build" and run[0] == f"FROM {BASE}"
    install = [s for s in build if s.startswith("RUN") and "--global" not in s]
    assert len(install) == 1 and not any(s == install[0] for s in run)
    copies = [s for s in run if s.startswith("COPY")]
    assert copies == ["COPY --from=build /app /app", "COPY --chown=10001:10001 . ."]


def test_npm_flags_follow_the_build_script():
    assert 'RUN ["npm", "ci", "--omit=dev"]' in render_node_dockerfile(
        PLANS["node_npm_ci"], BASE, {})
    text = render_node_dockerfile(PLANS["node_npm_install_build"], BASE, {})
    assert 'RUN ["npm", "install", "--include=dev"]' in text
    assert "RUN npm run build \\\n && npm prune --omit=dev\n" in text


def test_hostile_node_plans_are_refused():
    for plan, message in [
        (BuildPlan(stack="node", installer="pnpm", installer_version="9; rm -rf /",
                   dependency_files=("package.json",)), "Invalid package manager version"),
        (BuildPlan(stack="node", installer="bun", dependency_files=("package.json",)),
         "Unknown Node.js package manager 'bun'"),
        (BuildPlan(stack="node", installer="npm", dependency_files=("$HOME/package.json",)),
         "Unsupported dependency file name"),
    ]:
        with pytest.raises(BuildError, match=re.escape(message)):
            render_node_dockerfile(plan, BASE, {})
    with pytest.raises(ValueError):
        render_node_dockerfile(BuildPlan(stack="python"), BASE, {})


# ------------------------------------------------------------------ build context


def members(context) -> set[str]:
    with context, tarfile.open(fileobj=context) as tar:
        return set(tar.getnames())


def test_slugignore_and_node_modules_leave_the_context(tmp_path):
    tree(tmp_path, {
        "package.json": package(), "server.js": "", "node_modules/x/index.js": "",
        ".slugignore": "# big files\n*.psd\n/docs\ntest/fixtures\n",
        "art/logo.psd": "", "logo.psd": "", "docs/a.md": "", "src/docs/keep.md": "",
        "test/fixtures/big.bin": "", "test/unit.js": "",
    })
    names = members(build_context(tmp_path, dockerfile=(CONTEXT_DOCKERFILE, "FROM x\n"),
                                  excludes=(".git", "node_modules"),
                                  force_include=("package.json",)))
    assert {"package.json", "server.js", "src/docs/keep.md", "test/unit.js"} <= names
    for gone in ("logo.psd", "art/logo.psd", "docs/a.md", "test/fixtures/big.bin",
                 "node_modules/x/index.js"):
        assert gone not in names


def test_slugignore_never_drops_dependency_files(tmp_path):
    tree(tmp_path, {"package.json": package(), "package-lock.json": "{}",
                    ".slugignore": "*.json\n"})
    names = members(build_context(tmp_path, dockerfile=(CONTEXT_DOCKERFILE, "FROM x\n"),
                                  force_include=("package.json", "package-lock.json")))
    assert {"package.json", "package-lock.json"} <= names
