"""The Kubernetes job backend: one ConfigMap + batch/v1 Job per run, one shared watch for completions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from budeval.backends.base import RunFinishedCallback, RunSpec, RunState, Watch
from budeval.backends.kubernetes import api as kapi
from budeval.backends.kubernetes import manifests as m
from budeval.backends.kubernetes.classify import run_state
from budeval.backends.kubernetes.watcher import JobWatcher
from budeval.config import Settings
from budeval.errors import BudevalError, ConflictError, NotFoundError, ValidationError
from budeval.logs import get_logger
from budeval.schemas.ids import check_dns_label

Json = dict[str, Any]
#: Lines of a pod's log read for a failure excerpt, and a byte cap so a huge line cannot flood memory.
LOG_TAIL_LINES = 300
LOG_LIMIT_BYTES = 256 * 1024
#: Finished Jobs are deleted by the workflow's cleanup; the TTL is a safety net that must outlive the longest
#: evaluation (7 days), or a late status check would find no Job and submit the run again.
DEFAULT_TTL_S = 8 * 24 * 3600


def default_api_client() -> k8s.ApiClient:
    """In-cluster service account credentials, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config()
        except (k8s_config.ConfigException, OSError) as exc:
            raise ValidationError(
                f"no Kubernetes credentials: not in a cluster and no usable kubeconfig ({exc})", field="kubeconfig"
            ) from None
    return k8s.ApiClient()


class KubernetesBackend:
    """:class:`~budeval.backends.base.JobBackend` on a Kubernetes cluster (namespace ``settings.namespace``)."""

    name = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        api: k8s.ApiClient | None = None,
        *,
        backoff_limit: int | None = None,
        ttl_after_finished_s: int = DEFAULT_TTL_S,
        watch_timeout_s: float | None = None,
    ) -> None:
        """``backoff_limit`` / ``watch_timeout_s``: instead of the settings ``kube_job_backoff_limit`` /
        ``kube_watch_timeout_s`` (tests); API timeouts and relist backoffs are the settings' ``kube_*``."""
        self.settings = settings
        self.namespace = check_dns_label(settings.namespace, "namespace")
        self.client = api if api is not None else default_api_client()
        self.api = kapi.JsonApi(self.client, (settings.kube_connect_timeout_s, settings.kube_read_timeout_s))
        self.backoff_limit = settings.kube_job_backoff_limit if backoff_limit is None else backoff_limit
        self.ttl_after_finished_s = ttl_after_finished_s
        self.watch_timeout_s = settings.kube_watch_timeout_s if watch_timeout_s is None else watch_timeout_s
        self.datasets = m.datasets_volume(settings.datasets_pvc, settings.datasets_host_path,
                                          settings.compass_data_cache)

    # -- manifests -------------------------------------------------------------------------------------------------
    def manifests(self, spec: RunSpec) -> tuple[Json, Json]:
        """The ConfigMap and Job this backend creates for ``spec`` (before the Job's uid is known)."""
        s = self.settings
        cm = m.config_map(spec, namespace=self.namespace, engine_version=s.engine_version)
        job = m.job(
            spec,
            namespace=self.namespace,
            image=s.runner_image,
            service_account=s.runner_service_account,
            results_pvc=s.results_pvc,
            results_root=s.resolved_results_root().as_posix(),
            engine_version=s.engine_version,
            backoff_limit=self.backoff_limit,
            ttl_after_finished_s=self.ttl_after_finished_s,
            datasets=self.datasets,
        )
        return cm, job

    # -- JobBackend ------------------------------------------------------------------------------------------------
    def submit(self, spec: RunSpec) -> RunState:
        cm, job = self.manifests(spec)
        name = job["metadata"]["name"]
        log = get_logger(eval_id=spec.eval_id, run_id=spec.run_id, job=name)
        self._create_or_adopt(kapi.core_path(self.namespace, "configmaps"), cm, spec, "configmap")
        created, job = self._create_or_adopt(kapi.jobs_path(self.namespace), job, spec, "job")
        self._own_config_map(job)
        if created:
            log.info("job created", namespace=self.namespace)
            return RunState(eval_id=spec.eval_id, run_id=spec.run_id, phase="pending")
        log.info("job adopted", namespace=self.namespace)
        return self.get(spec.eval_id, spec.run_id)

    def get(self, eval_id: str, run_id: str) -> RunState:
        name = m.job_name(eval_id, run_id)
        try:
            job = self.api.request("GET", kapi.jobs_path(self.namespace, name), what=f"get job {name}")
        except NotFoundError:
            return RunState(eval_id=eval_id, run_id=run_id, phase="unknown", message=f"no Job {name}")
        if not self._is_run(job, eval_id, run_id):
            return RunState(eval_id=eval_id, run_id=run_id, phase="unknown", message=f"Job {name} is not this run")
        pods: list[Json] = []
        if not self._complete(job):
            pods = kapi.job_pods(self.api, self.namespace, job, f"{m.LABEL_EVAL}={eval_id},{m.LABEL_RUN}={run_id}")
        return run_state(
            job,
            pods,
            now=datetime.now(UTC),
            unschedulable_after_s=self.settings.unschedulable_after_s,
            read_log=self.read_log,
            kueue_admission_timeout_s=self.settings.kueue_admission_timeout_s,
        )

    def cancel(self, eval_id: str) -> None:
        selector = m.eval_selector(eval_id)
        foreground = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
        self.api.request(
            "DELETE",
            kapi.jobs_path(self.namespace),
            what=f"delete jobs of {eval_id}",
            query={"labelSelector": selector},
            body=foreground,
        )
        # ConfigMaps follow their Job; this also removes one whose Job was never created (a crash in between).
        self.api.request(
            "DELETE",
            kapi.core_path(self.namespace, "configmaps"),
            what=f"delete configmaps of {eval_id}",
            query={"labelSelector": selector},
        )
        get_logger(eval_id=eval_id).info("jobs cancelled", namespace=self.namespace)

    def cleanup(self, eval_id: str, run_id: str) -> None:
        name = m.job_name(eval_id, run_id)
        foreground = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
        for path, what in (
            (kapi.jobs_path(self.namespace, name), f"delete job {name}"),
            (kapi.core_path(self.namespace, "configmaps", name), f"delete configmap {name}"),
        ):
            try:
                obj = self.api.request("GET", path, what=what)
                if not self._is_run(obj, eval_id, run_id):
                    continue  # never delete what is not ours
                self.api.request("DELETE", path, what=what, body=foreground)
            except NotFoundError:
                continue

    def work_dir(self, eval_id: str, run_id: str) -> Path:
        return self.settings.resolved_results_root() / check_dns_label(eval_id, "eval_id") / check_dns_label(
            run_id, "run_id"
        )

    def watch(self, on_finished: RunFinishedCallback) -> Watch:
        return self.watcher(on_finished).start()

    def watcher(self, on_finished: RunFinishedCallback, **kwargs: Any) -> JobWatcher:
        """A not yet started watcher (tests and benchmarks read its ``stats``)."""
        return JobWatcher(
            self.api,
            namespace=self.namespace,
            unschedulable_after_s=self.settings.unschedulable_after_s,
            kueue_admission_timeout_s=self.settings.kueue_admission_timeout_s,
            on_finished=on_finished,
            read_log=self.read_log,
            watch_timeout_s=kwargs.pop("watch_timeout_s", self.watch_timeout_s),
            backoffs_s=kwargs.pop("backoffs_s", self.settings.kube_watch_backoffs_s),
            **kwargs,
        )

    # -- helpers ---------------------------------------------------------------------------------------------------
    def read_log(self, pod_name: str) -> str:
        """The tail of the runner container's log through ``pods/log``; "" when the kubelet has none."""
        try:
            return self.api.text(
                kapi.core_path(self.namespace, "pods", pod_name) + "/log",
                what=f"log of pod {pod_name}",
                query={"container": m.CONTAINER, "tailLines": LOG_TAIL_LINES, "limitBytes": LOG_LIMIT_BYTES},
            )
        except BudevalError as exc:
            get_logger(pod=pod_name).info("pod log unavailable", error=exc.message)
            return ""

    @staticmethod
    def _is_run(obj: Json, eval_id: str, run_id: str) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return (
            labels.get(m.LABEL_EVAL) == eval_id
            and labels.get(m.LABEL_RUN) == run_id
            and labels.get("app.kubernetes.io/managed-by") == m.MANAGED_BY
        )

    @staticmethod
    def _complete(job: Json) -> bool:
        return any(
            c.get("type") == "Complete" and c.get("status") == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        )

    def _create_or_adopt(self, collection: str, body: Json, spec: RunSpec, kind: str) -> tuple[bool, Json]:
        name = body["metadata"]["name"]
        try:
            return True, self.api.request("POST", collection, what=f"create {kind} {name}", body=body)
        except kapi.AlreadyExists:
            pass
        existing = self.api.request("GET", f"{collection}/{name}", what=f"get {kind} {name}")
        if not self._is_run(existing, spec.eval_id, spec.run_id):
            labels = (existing.get("metadata") or {}).get("labels") or {}
            raise ConflictError(
                f"{kind} {self.namespace}/{name} exists but is not run {spec.eval_id}/{spec.run_id} "
                f"(its labels: eval={labels.get(m.LABEL_EVAL)!r}, run={labels.get(m.LABEL_RUN)!r}); "
                "delete it or choose another eval id"
            )
        return False, existing

    def _own_config_map(self, job: Json) -> None:
        """Make the ConfigMap a dependent of the Job (created first so the pod can always mount it)."""
        name = job["metadata"]["name"]
        path = kapi.core_path(self.namespace, "configmaps", name)
        ref = m.owner_reference(job)
        cm = self.api.request("GET", path, what=f"get configmap {name}")
        if any(o.get("uid") == ref["uid"] for o in (cm.get("metadata") or {}).get("ownerReferences") or []):
            return
        self.api.request(
            "PATCH",
            path,
            what=f"set owner of configmap {name}",
            body={"metadata": {"ownerReferences": [ref]}},
            content_type="application/merge-patch+json",
        )
