#!/usr/bin/env python3
"""Checks the deployment files in deploy/ against Kubernetes, Compose and the binaries.

    python3 deploy/check.py --bin-dir target/release [--target-dir target]
    python3 deploy/check.py --dure target/debug/dure      # `dure run <svc>` instead

1. renders deploy/k8s/base and each overlay with a real kustomize
   (`kustomize build`, or `kubectl kustomize`, which embeds it);
2. validates every rendered object with kubernetes-validate, strict mode (no
   unknown fields), against the oldest Kubernetes these manifests support and
   the newest the package bundles; no rendered Secret may carry values;
3. checks the dure containers: probes on /readyz and /healthz, non-root,
   read-only root filesystem, no capabilities, memory requests and limits, a
   termination grace period longer than preStop + DURE_SHUTDOWN_GRACE, and
   DURE_LISTEN on the declared container port;
4. validates deploy/compose.yaml against the Compose Specification schema;
5. checks that every variable the manifests and compose.yaml give a dure
   service is one its binary accepts (`--help` lists `[env: NAME]` for each
   flag), besides RUST_LOG and the OpenTelemetry variables below;
6. checks deploy/Dockerfile: it builds with `cargo build --release --locked
   [--package dure-${SERVICE}] --bin dure-${SERVICE}`, copies
   target/release/dure-${SERVICE} from where
   that build puts it, and each service's image runs that file as a non-root
   user with a HEALTHCHECK and STOPSIGNAL SIGTERM; with --target-dir, that the
   binaries exist there.

Needs python3 with PyYAML, jsonschema and kubernetes-validate, and kustomize or
kubectl (KUSTOMIZE=/path/to/either, or on PATH). Exits non-zero on any failure.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as err:  # pragma: no cover - environment problem
    sys.exit(f"deploy/check.py: {err}; install: pip install pyyaml jsonschema kubernetes-validate")

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
RENDERED = ["base", "overlays/dev", "overlays/prod"]
SERVICES = ["identity", "posting", "notice", "notification", "reporting", "web", "gateway", "registry"]

# The oldest Kubernetes the manifests are for: the preStop `sleep` action is
# on by default from 1.30.
OLDEST_KUBERNETES = "1.30.0"

# The Compose Specification schema, vendored: deploy/compose-spec.json is
# check_jsonschema/builtin_schemas/vendor/compose-spec.json from the PyPI
# package check-jsonschema 0.39.0 (sha256 d549057e…ed10e64, which that
# package vendors from the compose-spec project; Apache-2.0, see
# deploy/compose-spec.LICENSE).
COMPOSE_SCHEMA = DEPLOY / "compose-spec.json"

# Read by the process though no flag declares them: the log filter and the
# standard OpenTelemetry variables the chassis's trace export reads
# (crates/telemetry/src/otlp/settings.rs).
EXTRA_ENV = {
    "RUST_LOG",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
}

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


class Report(list):
    """The failures of one check (a list), plus notes printed with its result."""

    def __init__(self):
        super().__init__()
        self.notes = []

    def note(self, text):
        self.notes.append(text)


class Checks:
    """Runs named checks and collects their failures, so one run reports all."""

    def __init__(self):
        self.results = []  # (name, Report)

    def run(self, name, function, *args):
        report = Report()
        try:
            function(report, *args)
        except CheckError as err:
            report.append(str(err))
        self.record(name, report)
        return not report

    def record(self, name, report):
        self.results.append((name, report))
        print(f"{'ok  ' if not report else 'FAIL'} {name}")
        for line in report.notes + list(report):
            print(f"       {line}")
        sys.stdout.flush()


class CheckError(Exception):
    """A failure that stops the check it happens in."""


# ---------------------------------------------------------------- kustomize --


def kustomize_command(explicit):
    """The command that renders a kustomization directory, as a list prefix."""
    candidates = [explicit, os.environ.get("KUSTOMIZE"), shutil.which("kustomize"), shutil.which("kubectl")]
    for candidate in candidates:
        if not candidate:
            continue
        path = shutil.which(candidate) or candidate
        if not os.access(path, os.X_OK):
            raise CheckError(f"{candidate} is not an executable kustomize or kubectl")
        if "kubectl" in os.path.basename(path):
            return [path, "kustomize"]
        return [path, "build"]
    raise CheckError(
        "no kustomize: put kustomize or kubectl on PATH, or set KUSTOMIZE=/path/to/it "
        "(kubectl >= 1.27 embeds kustomize v5)"
    )


def render(failures, kustomize, rendered):
    version = subprocess.run(kustomize[:1] + (["version", "--client"] if kustomize[1] == "kustomize" else ["version"]),
                             capture_output=True, text=True)
    failures.note("using " + " ".join(kustomize) + ": " + " ".join(version.stdout.split()))
    for overlay in RENDERED:
        result = subprocess.run(kustomize + [str(K8S / overlay)], capture_output=True, text=True)
        if result.returncode != 0:
            failures.append(f"{overlay}: kustomize failed: {result.stderr.strip()}")
            continue
        documents = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
        if not documents:
            failures.append(f"{overlay}: rendered nothing")
        for document in documents:
            if not isinstance(document, dict) or "kind" not in document:
                failures.append(f"{overlay}: rendered something that is not an object: {document!r:.80}")
        rendered[overlay] = documents


def name_of(document):
    metadata = document.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{document.get('kind')}/{(namespace + '/') if namespace else ''}{metadata.get('name')}"


# --------------------------------------------------------- kubernetes schema --


def validate_kubernetes(failures, rendered, versions):
    for overlay, documents in rendered.items():
        for document in documents:
            for version in versions:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    failures.append(f"{overlay}: {name_of(document)}: no Kubernetes {version} schema for "
                                    f"{document.get('apiVersion')} {document.get('kind')}")
                    break
                except kubernetes_validate.ValidationError as err:
                    where = "/".join(str(p) for p in err.path)
                    failures.append(f"{overlay}: {name_of(document)} (Kubernetes {version}): at {where or '/'}: "
                                    f"{err.message}")
                    break
            if document.get("kind") == "Secret" and (document.get("data") or document.get("stringData")):
                failures.append(f"{overlay}: {name_of(document)}: a Secret with values is committed; "
                                "reference Secrets that are created outside the repository instead")


# ------------------------------------------------------------ dure containers --


def dure_service(image):
    """`identity` for images such as registry.example.com/dure/dure-identity:1.2."""
    if not image:
        return None
    last = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    if last.startswith("dure-"):
        return last[len("dure-"):]
    return None


def pod_spec(document):
    spec = document.get("spec") or {}
    if document["kind"] == "Pod":
        return spec
    if document["kind"] == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    return ((spec.get("template") or {}).get("spec")) or {}


def dure_containers(documents):
    """(workload, pod spec, container, service) for every container running a dure image."""
    for document in documents:
        if document.get("kind") not in WORKLOADS:
            continue
        spec = pod_spec(document)
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            service = dure_service(container.get("image"))
            if service is not None:
                yield document, spec, container, service


def container_env(documents, workload, container, failures, where):
    """{name: value or None} the container gets from env and envFrom."""
    namespace = (workload.get("metadata") or {}).get("namespace")
    config_maps = {
        ((d.get("metadata") or {}).get("namespace"), (d.get("metadata") or {}).get("name")): d
        for d in documents
        if d.get("kind") == "ConfigMap"
    }
    variables = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            reference = source["configMapRef"]
            config_map = config_maps.get((namespace, reference.get("name")))
            if config_map is None:
                if not reference.get("optional"):
                    failures.append(f"{where}: envFrom names ConfigMap {reference.get('name')}, "
                                    "which is not in the rendered manifests")
                continue
            for key, value in (config_map.get("data") or {}).items():
                variables[prefix + key] = value
        elif "secretRef" in source:
            failures.append(f"{where}: envFrom secretRef {source['secretRef'].get('name')} hides which "
                            "variables it sets; use env[].valueFrom.secretKeyRef, one per variable")
    for variable in container.get("env") or []:
        variables[variable["name"]] = variable.get("value")
    return variables


def parse_seconds(text):
    """Seconds in a dure duration (500ms, 30s, 15m, 2h, 30d; a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(text))
    if not match:
        return None
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def check_containers(failures, rendered):
    for overlay, documents in rendered.items():
        found = set()
        for workload, spec, container, service in dure_containers(documents):
            found.add(service)
            where = f"{overlay}: {name_of(workload)} container {container.get('name')}"
            env = container_env(documents, workload, container, failures, where)
            security = container.get("securityContext") or {}
            pod_security = spec.get("securityContext") or {}
            if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
                failures.append(f"{where}: runAsNonRoot is not set")
            if security.get("readOnlyRootFilesystem") is not True:
                failures.append(f"{where}: readOnlyRootFilesystem is not true")
            if security.get("allowPrivilegeEscalation") is not False:
                failures.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
                failures.append(f"{where}: capabilities are not all dropped")
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    failures.append(f"{where}: {probe} should GET {path}, not {got}")
            resources = container.get("resources") or {}
            for kind in ("requests", "limits"):
                if "memory" not in (resources.get(kind) or {}):
                    failures.append(f"{where}: no memory {kind}")
            # Draining must finish before the kubelet sends SIGKILL.
            grace = parse_seconds(env.get("DURE_SHUTDOWN_GRACE") or "10s")
            pre_stop = ((((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {})
                        .get("seconds", 0))
            termination = spec.get("terminationGracePeriodSeconds", 30)
            if grace is None:
                failures.append(f"{where}: DURE_SHUTDOWN_GRACE={env.get('DURE_SHUTDOWN_GRACE')} is not a duration")
            elif termination <= pre_stop + grace:
                failures.append(f"{where}: terminationGracePeriodSeconds {termination} is not longer than "
                                f"preStop {pre_stop}s + DURE_SHUTDOWN_GRACE {grace:g}s")
            listen = env.get("DURE_LISTEN")
            ports = [p.get("containerPort") for p in container.get("ports") or []]
            if listen is None:
                failures.append(f"{where}: DURE_LISTEN is not set (the image's default may not match the ports)")
            elif not listen.rsplit(":", 1)[-1].isdigit() or int(listen.rsplit(":", 1)[-1]) not in ports:
                failures.append(f"{where}: DURE_LISTEN={listen} is not on a declared containerPort {ports}")
        if not found:
            failures.append(f"{overlay}: no container runs a dure-<service> image")


# -------------------------------------------------------------------- compose --


def validate_compose(failures, compose):
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(compose))
    paths = [tuple(e.absolute_path) for e in errors]
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(error.absolute_path)
        # A property that failed is also "unevaluated" for its parent: report
        # only the failure itself.
        if error.validator == "unevaluatedProperties" and any(
                len(other) > len(path) and other[:len(path)] == path for other in paths):
            continue
        while error.context:  # anyOf/oneOf: the alternative that got furthest
            error = max(error.context, key=lambda e: len(e.absolute_path))
        where = "/".join(str(p) for p in error.absolute_path) or "/"
        failures.append(f"compose.yaml: at {where}: {error.message}")
    services = compose.get("services") or {}
    for name, service in services.items():
        for dependency in service.get("depends_on") or []:
            if dependency not in services:
                failures.append(f"compose.yaml: {name} depends on {dependency}, which is not a service")


def compose_dure_services(compose):
    """(compose name, dure service, environment dict, compose service) for each dure service."""
    for name, service in (compose.get("services") or {}).items():
        build_args = (service.get("build") or {}).get("args") if isinstance(service.get("build"), dict) else None
        if isinstance(build_args, list):
            build_args = dict(arg.split("=", 1) for arg in build_args if "=" in arg)
        dure = (build_args or {}).get("SERVICE") or dure_service(service.get("image"))
        if dure is None:
            continue
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict((item.split("=", 1) + [None])[:2] for item in environment)
        yield name, dure, environment, service


# ------------------------------------------------------------------ variables --


def accepted_variables(service, bin_dir, dure):
    """The DURE_* variables the binary's --help lists for its flags."""
    command = [str(Path(bin_dir) / f"dure-{service}"), "--help"] if bin_dir else [dure, "run", service, "--help"]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
                   "MIMALLOC_ARENA_EAGER_COMMIT": "0"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CheckError(f"cannot run {shlex.join(command)}: {err}")
    if result.returncode != 0:
        raise CheckError(f"{shlex.join(command)} exited {result.returncode}: {result.stderr.strip()[:400]}")
    # clap prints `[env: NAME=]`, or `[env: NAME]` when values are hidden; a
    # wrapped help line may break after `env:`.
    names = set(re.findall(r"\[env:\s+([A-Z][A-Z0-9_]*)", result.stdout))
    if not names:
        raise CheckError(f"{shlex.join(command)} lists no [env: …] variables; is it a dure binary?")
    return names


def check_variables(failures, rendered, compose, bin_dir, dure):
    wanted = []  # (where, service, variable)
    for overlay, documents in rendered.items():
        for workload, _spec, container, service in dure_containers(documents):
            where = f"{overlay}: {name_of(workload)} container {container.get('name')}"
            for variable in container_env(documents, workload, container, [], where):
                wanted.append((where, service, variable))
    for name, service, environment, _ in compose_dure_services(compose):
        for variable in environment:
            wanted.append((f"compose.yaml: service {name}", service, variable))
    accepted = {}
    for service in sorted({service for _, service, _ in wanted}):
        if service not in SERVICES:
            failures.append(f"an image names dure-{service}, which is not a dure service ({', '.join(SERVICES)})")
            continue
        accepted[service] = accepted_variables(service, bin_dir, dure)
    for where, service, variable in wanted:
        if service in accepted and variable not in accepted[service] | EXTRA_ENV:
            failures.append(f"{where}: dure-{service} accepts no variable {variable}")
    counts = ", ".join(f"{s} {len(v)}" for s, v in sorted(accepted.items()))
    failures.note(f"{len(wanted)} settings checked against the variables each binary accepts ({counts})")


# ----------------------------------------------------------------- Dockerfile --


def dockerfile_instructions(text):
    """[(instruction, flags, arguments)] with continuations joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        # Flags (--from=…, --interval=…) come first; the rest is the argument.
        flags = []
        while arguments.lstrip().startswith("--"):
            flag, _, arguments = arguments.lstrip().partition(" ")
            flags.append(flag)
        instructions.append((keyword.upper(), flags, arguments.strip()))
    if pending:
        instructions.append(("?", [], pending))
    return instructions


def exec_form(arguments):
    """The list of a JSON-form CMD/ENTRYPOINT, or None."""
    try:
        value = json.loads(arguments)
        return value if isinstance(value, list) else None
    except json.JSONDecodeError:
        return None


def substitute(text, variables):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def check_dockerfile(failures, target_dir, profile):
    path = DEPLOY / "Dockerfile"
    instructions = dockerfile_instructions(path.read_text())
    global_args, stages = {}, []
    for keyword, flags, arguments in instructions:
        if keyword == "FROM":
            words = arguments.split()
            stages.append({"base": words[0], "name": words[2] if len(words) >= 3 and words[1].upper() == "AS"
                           else None, "instructions": []})
        elif not stages:
            if keyword == "ARG":
                name, _, default = arguments.partition("=")
                global_args[name] = default
        else:
            stages[-1]["instructions"].append((keyword, flags, arguments))
    by_name = {stage["name"]: stage for stage in stages if stage["name"]}

    # The stage that builds: it runs `cargo build`.
    builds = [(stage, arguments) for stage in stages for keyword, _, arguments in stage["instructions"]
              if keyword == "RUN" and re.search(r"\bcargo\s+build\b", arguments)]
    if len(builds) != 1:
        raise CheckError(f"Dockerfile: expected one RUN cargo build, found {len(builds)}")
    build_stage, build_command = builds[0]
    words = build_command.split()
    for required in ("--release", "--locked"):
        if required not in words:
            failures.append(f"Dockerfile: the cargo build lacks {required}: {build_command}")
    def values(*names):
        return [words[i + 1] for i, w in enumerate(words[:-1]) if w in names] + \
               [w.split("=", 1)[1] for w in words if w.split("=", 1)[0] in names and "=" in w]

    bins = values("--bin")
    if bins != ["dure-${SERVICE}"]:
        failures.append(f"Dockerfile: the cargo build should name --bin dure-${{SERVICE}}, names {bins}: {build_command}")
    # A package, if named, must be the one that has the binary.
    packages = values("-p", "--package")
    if packages not in ([], ["dure-${SERVICE}"]):
        failures.append(f"Dockerfile: the cargo build names packages {packages}, not dure-${{SERVICE}}: {build_command}")
    if "--target-dir" in build_command or "CARGO_TARGET_DIR" in path.read_text():
        failures.append("Dockerfile: the target directory is moved; the binary would not be at target/release")

    def lineage(stage):
        chain = [stage]
        while chain[-1]["base"] in by_name:
            chain.append(by_name[chain[-1]["base"]])
        return list(reversed(chain))

    # Where cargo puts the binary: <WORKDIR of the build stage>/target/release/.
    workdir = "/"
    for stage in lineage(build_stage):
        for keyword, _, arguments in stage["instructions"]:
            if keyword == "WORKDIR":
                workdir = arguments if arguments.startswith("/") else os.path.join(workdir, arguments)
    built = os.path.join(workdir, "target/release/dure-${SERVICE}")

    for service in SERVICES[:]:
        variables = dict(global_args, SERVICE=service)
        final = stages[-1]
        base = substitute(final["base"], variables)
        if base not in by_name and final["base"] != base:
            failures.append(f"Dockerfile: SERVICE={service}: the image starts FROM {base}, which is no stage")
            continue
        chain = lineage(dict(final, base=base))
        config = {"USER": None, "ENTRYPOINT": None, "HEALTHCHECK": None, "STOPSIGNAL": None, "EXPOSE": [], "ENV": {}}
        copied = []
        for stage in chain:
            for keyword, flags, arguments in stage["instructions"]:
                if keyword in ("USER", "ENTRYPOINT", "HEALTHCHECK", "STOPSIGNAL"):
                    config[keyword] = arguments
                elif keyword == "EXPOSE":
                    config["EXPOSE"] += arguments.split()
                elif keyword == "ENV":
                    for name, value in re.findall(r"(\w+)=(\S+)", arguments):
                        config["ENV"][name] = value
                elif keyword == "COPY" and any(f == f"--from={build_stage['name']}" for f in flags):
                    source, destination = arguments.split()[-2:]
                    copied.append((source, destination))
        where = f"Dockerfile: SERVICE={service}"
        binaries = [(s, d) for s, d in copied if s == built]
        if not binaries:
            failures.append(f"{where}: copies nothing from {built} (where the cargo build puts the binary); "
                            f"copies {copied}")
            continue
        destination = substitute(binaries[0][1], variables)
        entrypoint = exec_form(config["ENTRYPOINT"] or "")
        if not entrypoint or entrypoint[0] != destination:
            failures.append(f"{where}: ENTRYPOINT {config['ENTRYPOINT']} does not run {destination}")
        user = (config["USER"] or "root").split(":")[0]
        if user in ("root", "0"):
            failures.append(f"{where}: runs as root")
        if not config["HEALTHCHECK"] or "/healthz" not in config["HEALTHCHECK"]:
            failures.append(f"{where}: no HEALTHCHECK on /healthz")
        if config["STOPSIGNAL"] != "SIGTERM":
            failures.append(f"{where}: STOPSIGNAL is {config['STOPSIGNAL']}, not SIGTERM")
        listen = config["ENV"].get("DURE_LISTEN", "")
        if not listen.startswith("0.0.0.0:") or listen.split(":")[-1] not in config["EXPOSE"]:
            failures.append(f"{where}: DURE_LISTEN={listen or '(unset)'} does not listen on all interfaces "
                            f"on the EXPOSEd port {config['EXPOSE']}")
    relative = os.path.relpath(built, workdir)
    failures.note(f"builds `{build_command}`, copies {relative}")
    if target_dir:
        for service in SERVICES:
            binary = Path(target_dir) / profile / f"dure-{service}"
            if not (binary.is_file() and os.access(binary, os.X_OK)):
                failures.append(f"{binary}: missing (the image of {service} copies target/release/dure-{service})")


# ----------------------------------------------------------------------- main --


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    binary = parser.add_mutually_exclusive_group()
    binary.add_argument("--bin-dir", metavar="DIR", help="run DIR/dure-<service> --help for the variables")
    binary.add_argument("--dure", metavar="BIN", help="run BIN run <service> --help instead")
    parser.add_argument("--target-dir", metavar="DIR", help="check DIR/<profile>/dure-<service> exist")
    parser.add_argument("--profile", default="release", help="profile directory under --target-dir [release]")
    parser.add_argument("--kustomize", metavar="BIN", help="kustomize or kubectl [$KUSTOMIZE, then PATH]")
    parser.add_argument("--kube-version", action="append", metavar="X.Y.Z",
                        help=f"Kubernetes version(s) to validate against [{OLDEST_KUBERNETES} and the newest bundled]")
    parser.add_argument("--skip-variables", action="store_true",
                        help="do not check variables against binaries (when none are built)")
    args = parser.parse_args()
    if not (args.bin_dir or args.dure or args.skip_variables):
        parser.error("give --bin-dir DIR or --dure BIN (or --skip-variables)")
    versions = args.kube_version or [OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version()]

    checks = Checks()
    rendered = {}
    try:
        kustomize = kustomize_command(args.kustomize)
    except CheckError as err:
        kustomize = None
        report = Report()
        report.append(str(err))
        checks.record("render with kustomize", report)
    if kustomize:
        checks.run(f"render {', '.join(RENDERED)} with kustomize", render, kustomize, rendered)
    if rendered:
        checks.run(f"Kubernetes {', '.join(versions)} schemas (strict), no committed Secret values",
                   validate_kubernetes, rendered, versions)
        checks.run("dure containers: probes, hardening, resources, grace, port", check_containers, rendered)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    checks.run("compose.yaml against the Compose Specification", validate_compose, compose)
    if not args.skip_variables:
        checks.run("variables are ones the binaries accept", check_variables, rendered, compose,
                   args.bin_dir, args.dure)
    checks.run("Dockerfile builds and copies target/release/dure-${SERVICE}" +
               (f", present in {args.target_dir}/{args.profile}" if args.target_dir else ""),
               check_dockerfile, args.target_dir, args.profile)

    failed = sum(1 for _, failures in checks.results if failures)
    print(f"deploy-check: {len(checks.results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
