"""The Kubernetes backend against a real kube-apiserver and Job controller, with the fake kubelet as the cluster."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from budeval.backends.kubernetes import KubernetesBackend
from budeval.backends.kubernetes import manifests as m
from budeval.backends.kubernetes.api import JsonApi, core_path, jobs_path
from budeval.config import Settings
from budeval.engine.results import parse_run
from budeval.errors import BudevalError, ConflictError, NotFoundError
from tests.k8s.conftest import new_client
from tests.k8s.helpers import Reports, wait_until
from tests.k8s.kubelet import Behaviour, FakeKubelet
from tests.k8s.specs import SECRET_VALUE, endpoint_spec, hf_spec

pytestmark = pytest.mark.k8s

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opencompass"
KubeletFactory = Callable[..., FakeKubelet]


def by_run(behaviours: dict[str, Behaviour]) -> Callable[[dict[str, Any]], Behaviour]:
    def decide(pod: dict[str, Any]) -> Behaviour:
        return behaviours[pod["metadata"]["labels"][m.LABEL_RUN]]

    return decide


def fixture_log(name: str) -> str:
    return (FIXTURES / name / ".budeval" / "output.log").read_text()


def exists(api: JsonApi, path: str) -> bool:
    try:
        api.request("GET", path, what="get")
        return True
    except NotFoundError:
        return False


def test_success_through_extraction(
    backend: KubernetesBackend, kubelet_factory: KubeletFactory, kube_admin: JsonApi
) -> None:
    kubelet_factory(
        by_run({"r0": Behaviour("succeed", fixture=FIXTURES / "qa_chat", run_for_s=0.5)}),
        node_labels={"gpu.type": "a100"},
    )
    # Cluster-scoped and shared by tests (AlreadyExists is fine): the Priority admission plugin needs the class.
    with contextlib.suppress(BudevalError):
        kube_admin.request(
            "POST",
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            what="priority class",
            body={"metadata": {"name": "budeval-test-low"}, "value": 100},
        )
    reports = Reports()
    watch = backend.watch(reports)
    try:
        spec = hf_spec(
            "eval-ok",
            gpus=1,
            cpu="2",
            memory="8Gi",
            node_selector={"gpu.type": "a100"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            priority_class="budeval-test-low",
        )
        assert backend.submit(spec).phase == "pending"
        state = reports.wait("r0")
    finally:
        watch.stop()
    assert (state.phase, state.reason_class, state.eval_id) == ("succeeded", None, "eval-ok")
    assert backend.get("eval-ok", "r0").phase == "succeeded"
    # The ConfigMap is owned by the Job, so it goes with it.
    ns = backend.namespace
    cm = kube_admin.request("GET", core_path(ns, "configmaps", "eval-ok-r0"), what="cm")
    job = kube_admin.request("GET", jobs_path(ns, "eval-ok-r0"), what="job")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    # Cleanup removes the Job; the garbage collector takes the ConfigMap with it.
    backend.cleanup("eval-ok", "r0")
    wait_until(lambda: not exists(kube_admin, jobs_path(ns, "eval-ok-r0")), "job deleted")
    wait_until(lambda: not exists(kube_admin, core_path(ns, "configmaps", "eval-ok-r0")), "configmap collected")
    assert backend.get("eval-ok", "r0").phase == "unknown"
    # Extraction reads the work dir the pod wrote on the shared volume.
    work = backend.work_dir("eval-ok", "r0")
    assert work == backend.settings.resolved_results_root() / "eval-ok" / "r0"
    assert list(work.glob("*/summary/summary_*.csv")), "the pod wrote OpenCompass output into its --work-dir"
    parsed = parse_run(work)
    assert parsed.metrics, "the qa_chat fixture has scores"


FAILURES: dict[str, tuple[Behaviour, dict[str, Any], str, str]] = {
    # run id: (what the pod does, resources/timeout, expected class, text expected in message or excerpt)
    "oom": (Behaviour("oom", log="loading model\nKilled\n"), {}, "oom_killed", "OOMKilled"),
    "crash": (Behaviour("fail", exit_code=1, log=fixture_log("aborted")), {}, "crash", "JSONDecodeError"),
    "tasks": (
        Behaviour("fail", exit_code=1, log=fixture_log("two_models_one_fails")),
        {},
        "task_errors",
        "OpenICLInfer[missing-model/tiny_qa]",
    ),
    "evicted": (Behaviour("evict"), {}, "backoff_limit", "Evicted"),
    "pull": (Behaviour("image_pull"), {}, "image_pull", "ImagePullBackOff"),
    "deadline": (Behaviour("hang"), {"timeout_s": 2}, "deadline_exceeded", "DeadlineExceeded"),
}


def test_each_failure_class_with_reason_and_log(backend: KubernetesBackend, kubelet_factory: KubeletFactory) -> None:
    kubelet_factory(by_run({run: b for run, (b, _, _, _) in FAILURES.items()}), gpus=8)
    reports = Reports()
    watch = backend.watch(reports)
    try:
        for run, (_, extra, _, _) in FAILURES.items():
            backend.submit(hf_spec("eval-fail", run, **extra))
        states = {run: reports.wait(run) for run in FAILURES}
    finally:
        watch.stop()
    for run, (_, _, expected, text) in FAILURES.items():
        state = states[run]
        assert (run, state.phase, state.reason_class) == (run, "failed", expected), state
        assert text in state.message + state.log_excerpt, (run, state)
        # The poll fallback classifies the same way.
        polled = backend.get("eval-fail", run)
        assert (polled.phase, polled.reason_class) == ("failed", expected), (run, polled)
    assert "OpenCompass - ERROR" in states["tasks"].log_excerpt and "File " in states["crash"].log_excerpt
    assert "Killed" in states["oom"].log_excerpt  # read through pods/log from the kubelet


def quick_unschedulable(settings: Settings, kube_cluster: Path, **update: Any) -> KubernetesBackend:
    fast = settings.model_copy(update={"unschedulable_after_s": 2.0, **update})
    return KubernetesBackend(fast, new_client(kube_cluster), backoff_limit=0)


def test_pod_pending_without_a_free_gpu_is_unschedulable(
    settings: Settings, kube_cluster: Path, kubelet_factory: KubeletFactory
) -> None:
    backend = quick_unschedulable(settings, kube_cluster)
    kubelet_factory(lambda pod: Behaviour("succeed"), gpus=8)
    reports = Reports()
    watch = backend.watch(reports)
    try:
        backend.submit(hf_spec("eval-nogpu", "r0", gpus=16))
        state = reports.wait("r0")
    finally:
        watch.stop()
    assert (state.phase, state.reason_class) == ("failed", "unschedulable")
    assert "Insufficient nvidia.com/gpu" in state.message and "pending for" in state.message
    assert backend.get("eval-nogpu", "r0").reason_class == "unschedulable"


def test_cancel_deletes_jobs_pods_and_configmaps(
    backend: KubernetesBackend, kubelet_factory: KubeletFactory, kube_admin: JsonApi
) -> None:
    kubelet = kubelet_factory(lambda pod: Behaviour("hang"))
    other = hf_spec("eval-keep", "r0")
    for spec in (hf_spec("eval-cancel", "r0"), hf_spec("eval-cancel", "r1"), other):
        backend.submit(spec)
    wait_until(lambda: len(kubelet.hanging()) == 3, "three running pods")
    backend.cancel("eval-cancel")
    backend.cancel("eval-cancel")  # idempotent
    ns = backend.namespace
    sel = {"labelSelector": f"{m.LABEL_EVAL}=eval-cancel"}

    def gone() -> bool:
        return all(
            not kube_admin.request("GET", path, what="list", query=sel)["items"]
            for path in (jobs_path(ns), core_path(ns, "pods"), core_path(ns, "configmaps"))
        )

    wait_until(gone, "jobs, pods and configmaps of the cancelled eval deleted")
    assert backend.get("eval-cancel", "r0").phase == "unknown"
    assert backend.get("eval-keep", "r0").phase == "running"


def test_resubmit_adopts_and_foreign_job_conflicts(backend: KubernetesBackend, kube_admin: JsonApi) -> None:
    spec = hf_spec("eval-adopt", "r0")
    backend.submit(spec)
    ns = backend.namespace
    first = kube_admin.request("GET", jobs_path(ns, "eval-adopt-r0"), what="job")
    again = backend.submit(spec)
    assert again.phase == "pending" and again.run_id == "r0"
    jobs = kube_admin.request("GET", jobs_path(ns), what="jobs", query={"labelSelector": m.eval_selector("eval-adopt")})
    assert [j["metadata"]["uid"] for j in jobs["items"]] == [first["metadata"]["uid"]]
    # A Job of the same name that is not this run is never adopted.
    _, foreign = backend.manifests(hf_spec("eval-other", "r0"))
    foreign["metadata"]["name"] = "eval-clash-r0"
    kube_admin.request("POST", jobs_path(ns), what="foreign job", body=foreign)
    with pytest.raises(ConflictError, match="not run eval-clash/r0"):
        backend.submit(hf_spec("eval-clash", "r0"))


def test_api_key_reaches_the_pod_only_through_secret_key_ref(
    backend: KubernetesBackend,
    kubelet_factory: KubeletFactory,
    kube_admin: JsonApi,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns = backend.namespace
    kube_admin.request(
        "POST",
        core_path(ns, "secrets"),
        what="secret",
        body={"metadata": {"name": "llm-api"}, "stringData": {"api-key": SECRET_VALUE}},
    )
    # The runner crashes and prints the key: the excerpt the backend reports must not carry it.
    leaky = f"connecting with api_key={SECRET_VALUE}\nAuthorization: Bearer {SECRET_VALUE}\nTraceback: boom\n"
    kubelet_factory(lambda pod: Behaviour("fail", exit_code=2, log=leaky))
    reports = Reports()
    caplog.set_level(logging.DEBUG)
    watch = backend.watch(reports)
    try:
        backend.submit(endpoint_spec("eval-secret", secret="llm-api"))
        state = reports.wait("r0")
    finally:
        watch.stop()
    cm = kube_admin.request("GET", core_path(ns, "configmaps", "eval-secret-r0"), what="cm")
    job = kube_admin.request("GET", jobs_path(ns, "eval-secret-r0"), what="job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert SECRET_VALUE not in json.dumps(cm)  # the ConfigMap
    assert SECRET_VALUE not in json.dumps(container.get("command", []) + container.get("args", []))  # args
    assert SECRET_VALUE not in json.dumps([e.get("value") for e in container["env"]])  # env values
    assert SECRET_VALUE not in json.dumps(job)
    key_env = [e for e in container["env"] if e["name"] == m.API_KEY_ENV]
    assert key_env[0]["valueFrom"]["secretKeyRef"] == {"name": "llm-api", "key": "api-key", "optional": False}
    assert state.reason_class == "crash" and "Traceback" in state.log_excerpt
    assert SECRET_VALUE not in state.model_dump_json()  # what reaches events and workflow history
    backend.get("eval-secret", "r0")
    backend.cleanup("eval-secret", "r0")
    out = capsys.readouterr()
    assert SECRET_VALUE not in out.out + out.err + caplog.text  # budeval's logs


def test_watch_resumes_after_apiserver_restart(backend: KubernetesBackend, kubelet_factory: KubeletFactory) -> None:
    from tests.k8s.conftest import run_script

    kubelet = kubelet_factory(lambda pod: Behaviour("hang"))
    reports = Reports()
    watcher = backend.watcher(reports)
    watcher.start()
    try:
        backend.submit(hf_spec("eval-restart", "r0"))
        backend.submit(hf_spec("eval-restart", "r1"))
        wait_until(lambda: len(kubelet.hanging()) == 2, "two running pods")
        wait_until(watcher.synced.is_set, "watcher synced")
        lists_before = watcher.stats["lists"]
        restarted = run_script("restart", timeout=300)
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        # Finished after the restart: only a watch that reconnected sees these.
        kubelet.release(Behaviour("succeed"), lambda pod: pod["metadata"]["labels"][m.LABEL_RUN] == "r0")
        kubelet.release(Behaviour("oom"), lambda pod: pod["metadata"]["labels"][m.LABEL_RUN] == "r1")
        assert reports.wait("r0", timeout=180).phase == "succeeded"
        r1 = reports.wait("r1", timeout=180)
        assert (r1.phase, r1.reason_class) == ("failed", "oom_killed")
    finally:
        watcher.stop()
    assert watcher.stats["errors"] >= 1 and watcher.stats["lists"] > lists_before


def test_job_whose_pods_cannot_be_created_is_unschedulable(
    settings: Settings, kube_cluster: Path, kubelet_factory: KubeletFactory
) -> None:
    # The runner ServiceAccount is missing: the Job controller cannot create the pod (admission refuses it).
    broken = quick_unschedulable(settings, kube_cluster, runner_service_account="no-such-account")
    kubelet_factory(lambda pod: Behaviour("succeed"))
    reports = Reports()
    watch = broken.watch(reports)
    try:
        broken.submit(hf_spec("eval-nopod", "r0"))
        state = reports.wait("r0")
    finally:
        watch.stop()
    assert (state.phase, state.reason_class) == ("failed", "unschedulable")
    assert "no pod was created" in state.message


def test_a_kueue_job_never_admitted_fails_with_its_queue_named(
    settings: Settings, kube_cluster: Path, kubelet_factory: KubeletFactory, kube_admin: JsonApi
) -> None:
    # A Job for a Kueue queue that does not exist: budeval creates it suspended (Kueue unsuspends it on admission;
    # v1.20 drops the field) and no pod ever runs -- here the runner ServiceAccount is missing, so the Job
    # controller cannot create one either, as with a Job that stays suspended.
    queued = KubernetesBackend(
        settings.model_copy(update={"unschedulable_after_s": 600.0, "kueue_admission_timeout_s": 2.0,
                                    "runner_service_account": "no-such-account"}),
        new_client(kube_cluster), backoff_limit=0,
    )
    kubelet_factory(lambda pod: Behaviour("succeed"))
    reports = Reports()
    watch = queued.watch(reports)
    try:
        queued.submit(hf_spec("eval-kueue", "r0", queue="no-such-queue"))
        queued.submit(hf_spec("eval-kueue", "r1"))  # the same without a queue: judged by the pod limit only
        state = reports.wait("r0")
    finally:
        watch.stop()
    job = kube_admin.request("GET", jobs_path(queued.namespace, m.job_name("eval-kueue", "r0")), what="job")
    assert job["metadata"]["labels"][m.LABEL_QUEUE] == "no-such-queue"
    assert (state.phase, state.reason_class) == ("failed", "unschedulable")
    assert "Kueue did not admit" in state.message and "LocalQueue 'no-such-queue'" in state.message
    assert queued.get("eval-kueue", "r0").reason_class == "unschedulable"  # the poll fallback agrees
    assert queued.get("eval-kueue", "r1").phase == "pending"
