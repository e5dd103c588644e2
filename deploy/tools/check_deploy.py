"""Rules the schemas cannot express, checked on rendered manifests and on compose.yaml.

    python check_deploy.py k8s RENDERED.yaml [--external-secrets]
    python check_deploy.py compose compose.yaml
    python check_deploy.py dockerfile Dockerfile
    python check_deploy.py observability deploy/observability

Kubernetes: every workload runs non-root on a read-only root filesystem with probes,
requests and limits; every ticketing service has its own --target, probes on /readyz and
/healthz, a Service and a PodDisruptionBudget; every Secret and ConfigMap referenced is
rendered (unless --external-secrets: then Secrets are created outside the repository);
the Ingress routes and retries (proxy_next_upstream and its bounds) are
deploy/nginx/routes.conf's.
Compose: dependencies name existing services, every service has a health check, mounted
files exist.
Dockerfile (parsed by BuildKit's own parser): several stages, the release binary built
--locked, a final stage that runs it as a non-root user; .dockerignore keeps the target
directory and .git out and every workspace member in.
Observability: the collector's pipelines name only components it defines (what the
collector itself checks at start) and its scrape job keeps ticketing's pods; the Grafana
dashboard is well formed (unique panel ids, a query and refId per target, the data
source variable). That the dashboard's series exist is checked against a running
process by ticketing/tests/distributed.rs.
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ["auth", "tickets", "orders", "payments", "expiration", "webhooks", "checkin", "web"]
errors = []


def fail(message):
    errors.append(message)


def nginx_routes():
    """{path prefix: upstream} from deploy/nginx/routes.conf."""
    text = (ROOT / "deploy/nginx/routes.conf").read_text()
    routes = {}
    for prefix, upstream in re.findall(r"location ~ \^(/api/\w+)\(/\|\$\)\s*\{\s*proxy_pass http://(\w+);", text):
        routes[prefix] = upstream
    for upstream in re.findall(r"location / +\{\s*proxy_pass http://(\w+);", text):
        routes["/"] = upstream
    if len(routes) != 10:
        fail(f"routes.conf: expected 10 routes, found {routes}")
    return routes


def nginx_retries():
    """The retry settings of deploy/nginx/routes.conf, as ingress-nginx annotations."""
    text = (ROOT / "deploy/nginx/routes.conf").read_text()

    def directive(name):
        found = re.findall(rf"^{name}\s+([^;]+);", text, re.M)
        if len(found) != 1:
            fail(f"routes.conf: expected one {name}, found {found}")
            return ""
        return found[0].strip()

    seconds = lambda v: v[:-1] if v.endswith("s") else v  # noqa: E731
    nginx = {
        "proxy-next-upstream": directive("proxy_next_upstream"),
        "proxy-next-upstream-tries": directive("proxy_next_upstream_tries"),
        "proxy-next-upstream-timeout": seconds(directive("proxy_next_upstream_timeout")),
        "proxy-connect-timeout": seconds(directive("proxy_connect_timeout")),
    }
    if "non_idempotent" in nginx["proxy-next-upstream"]:
        fail("routes.conf: proxy_next_upstream must not retry non-idempotent requests")
    for case in ("error", "timeout", "http_502", "http_503", "http_504"):
        if case not in nginx["proxy-next-upstream"].split():
            fail(f"routes.conf: proxy_next_upstream must retry on {case}")
    return {f"nginx.ingress.kubernetes.io/{k}": v for k, v in nginx.items()}


def check_container(where, container):
    sc = container.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        fail(f"{where}: allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        fail(f"{where}: readOnlyRootFilesystem must be true")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        fail(f"{where}: capabilities must drop ALL")
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in container:
            fail(f"{where}: no {probe}")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(kind) or {}):
            fail(f"{where}: resources.{kind} needs cpu and memory")


def check_k8s(path, external_secrets):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    secrets = set(by_kind.get("Secret", {}))
    configmaps = set(by_kind.get("ConfigMap", {}))

    for kind in ("Deployment", "StatefulSet"):
        for name, d in by_kind.get(kind, {}).items():
            pod = d["spec"]["template"]["spec"]
            if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
                fail(f"{kind}/{name}: the pod must set runAsNonRoot")
            if pod.get("automountServiceAccountToken") is not False:
                fail(f"{kind}/{name}: automountServiceAccountToken must be false")
            for c in pod["containers"]:
                check_container(f"{kind}/{name}/{c['name']}", c)
                refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
                refs += [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
                for ref in refs:
                    if ref not in secrets and not external_secrets:
                        fail(f"{kind}/{name}: Secret {ref} is not rendered")
                for e in c.get("envFrom", []):
                    if "configMapRef" in e and e["configMapRef"]["name"] not in configmaps:
                        fail(f"{kind}/{name}: ConfigMap {e['configMapRef']['name']} is not rendered")

    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    pdbs = by_kind.get("PodDisruptionBudget", {}).values()
    for name in SERVICES:
        d = deployments.get(name)
        if not d:
            fail(f"Deployment/{name} is missing")
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c.get("args") != ["--target", name]:
            fail(f"Deployment/{name}: args must be --target {name}, not {c.get('args')}")
        if c["readinessProbe"].get("httpGet", {}).get("path") != "/readyz":
            fail(f"Deployment/{name}: the readiness probe must ask /readyz")
        if c["livenessProbe"].get("httpGet", {}).get("path") != "/healthz":
            fail(f"Deployment/{name}: the liveness probe must ask /healthz")
        labels = d["spec"]["selector"]["matchLabels"]
        if name not in services or services[name]["spec"]["selector"] != labels:
            fail(f"Service/{name} is missing or selects other pods")
        if not any(p["spec"]["selector"].get("matchLabels") == labels for p in pdbs):
            fail(f"Deployment/{name} has no PodDisruptionBudget")
    for name in ("postgres", "nats", "redis"):
        if name not in by_kind.get("StatefulSet", {}):
            fail(f"StatefulSet/{name} is missing")

    ingresses = list(by_kind.get("Ingress", {}).values())
    if len(ingresses) != 1:
        fail(f"expected one Ingress, found {len(ingresses)}")
        return
    spec = ingresses[0]["spec"]
    if spec.get("ingressClassName") != "nginx":
        fail("Ingress: ingressClassName must be nginx")
    hosts = [r.get("host") for r in spec["rules"]]
    if hosts != ["ticketing.dev"]:
        fail(f"Ingress: host must be ticketing.dev, found {hosts}")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in spec["rules"][0]["http"]["paths"]}
    if paths != nginx_routes():
        fail(f"Ingress routes {paths} differ from deploy/nginx/routes.conf {nginx_routes()}")
    for backend in paths.values():
        if backend not in services:
            fail(f"Ingress: Service {backend} is not rendered")
    annotations = ingresses[0]["metadata"].get("annotations") or {}
    for key, value in nginx_retries().items():
        if str(annotations.get(key)) != value:
            fail(f"Ingress: {key} is {annotations.get(key)!r}, routes.conf says {value!r}")


def check_compose(path):
    compose = yaml.safe_load(pathlib.Path(path).read_text())
    services = compose["services"]
    base = pathlib.Path(path).resolve().parent
    for name, s in services.items():
        for dep in s.get("depends_on") or {}:
            if dep not in services:
                fail(f"compose: {name} depends on unknown service {dep}")
        if "healthcheck" not in s:
            fail(f"compose: {name} has no health check")
        for volume in s.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                if not (base / source).exists():
                    fail(f"compose: {name} mounts missing {source}")
            elif source not in (compose.get("volumes") or {}):
                fail(f"compose: {name} uses undeclared volume {source}")
    for name in SERVICES:
        s = services.get(name)
        # The pages also name the gateway they read the API through (--api-url).
        if not s or (s.get("command") or [])[:2] != ["--target", name]:
            fail(f"compose: service {name} must run --target {name}")
    web = (services.get("web") or {}).get("command") or []
    if "--api-url" not in web:
        fail("compose: web needs --api-url, the gateway serving /api")
    upstreams = dict(re.findall(r"upstream (\w+)\s*\{\s*server ([\w.:]+)", (base / "deploy/nginx/compose.conf").read_text()))
    for name in set(nginx_routes().values()):
        if upstreams.get(name) != f"{name}:3000":
            fail(f"compose.conf: upstream {name} must be {name}:3000")


def check_dockerfile(path):
    import dockerfile
    import tomllib

    commands = dockerfile.parse_file(path)
    stages = [c for c in commands if c.cmd == "FROM"]
    if len(stages) < 2:
        fail("Dockerfile: expected a build stage and a runtime stage")
    for stage in stages:
        image = stage.value[0]
        if ":" not in image or image.endswith(":latest"):
            fail(f"Dockerfile: base image {image} must name a version")
    final = commands[commands.index(stages[-1]):]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("Dockerfile: the final stage must switch to a non-root USER")
    if not any(c.cmd == "COPY" and any(f.startswith("--from=") for f in c.flags) for c in final):
        fail("Dockerfile: the final stage must copy the binary from the build stage")
    entry = [c.value for c in final if c.cmd == "ENTRYPOINT"]
    if not entry or entry[-1][0] != "ticketing":
        fail("Dockerfile: the entrypoint must be the ticketing binary")
    builds = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    if "cargo build --release --locked -p ticketing" not in builds:
        fail("Dockerfile: the build stage must run cargo build --release --locked -p ticketing")

    base = pathlib.Path(path).resolve().parent
    ignored = [line.strip().rstrip("/") for line in (base / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("target", ".git"):
        if needed not in ignored:
            fail(f".dockerignore must exclude {needed}")
    members = tomllib.loads((base / "Cargo.toml").read_text())["workspace"]["members"]
    for member in members + ["Cargo.toml", "Cargo.lock"]:
        if member.split("/")[0] in ignored:
            fail(f".dockerignore excludes {member}, which the build needs")


def check_observability(directory):
    base = pathlib.Path(directory)
    config = yaml.safe_load((base / "otel-collector.yaml").read_text())
    service = config.get("service") or {}
    for ext in service.get("extensions") or []:
        if ext not in (config.get("extensions") or {}):
            fail(f"otel-collector: extension {ext} is not defined")
    pipelines = service.get("pipelines") or {}
    for name in ("traces", "metrics"):
        if name not in pipelines:
            fail(f"otel-collector: no {name} pipeline")
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind) or []:
                if component not in (config.get(kind) or {}):
                    fail(f"otel-collector: pipeline {name} uses undefined {kind[:-1]} {component}")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            fail(f"otel-collector: pipeline {name} needs receivers and exporters")
    jobs = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    keeps = [r.get("regex") for j in jobs for r in j.get("relabel_configs", []) if r.get("action") == "keep"]
    if "ticketing" not in keeps:
        fail("otel-collector: the scrape job must keep the pods of app.kubernetes.io/part-of=ticketing")

    dashboard = json.loads((base / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        fail("dashboard: panel ids repeat")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    if "datasource" not in variables:
        fail("dashboard: no datasource variable")
    for panel in dashboard["panels"]:
        if not {"x", "y", "w", "h"} <= set(panel.get("gridPos", {})):
            fail(f"dashboard: panel {panel['title']} has no position")
        refs = [t.get("refId") for t in panel.get("targets", [])]
        if not refs or len(refs) != len(set(refs)) or not all(t.get("expr") for t in panel["targets"]):
            fail(f"dashboard: panel {panel['title']} needs queries with distinct refIds")
        for target in panel.get("targets", []):
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__interval"}
            if used - variables:
                fail(f"dashboard: panel {panel['title']} uses unknown variables {used - variables}")


def main(argv):
    if argv[:1] == ["k8s"] and len(argv) in (2, 3):
        check_k8s(argv[1], "--external-secrets" in argv[2:])
    elif argv[:1] == ["compose"] and len(argv) == 2:
        check_compose(argv[1])
    elif argv[:1] == ["dockerfile"] and len(argv) == 2:
        check_dockerfile(argv[1])
    elif argv[:1] == ["observability"] and len(argv) == 2:
        check_observability(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
