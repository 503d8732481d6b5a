"""A deployment's model loaded for serving, the loader chosen by the task its card names
(tasks/registry.py): a generator's window and step sessions, or a classifier's graph and
tokenizer. Whatever does not load or fails its probe is refused with the reason."""

from pathlib import Path

from thunder_dagster.deployments.pointers import Deployment, read_pointer
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.serving.classification import LoadedClassifier, load_classifier
from thunder_dagster.serving.generation import LoadedModel, load_generator
from thunder_dagster.serving.sessions import NoDeploymentError, RefusedModelError
from thunder_dagster.tasks.registry import task_kind

# A chat or instruction agent answers through the instruct base; a model deployed for one
# (a generator trained from its pairs) is a generator's files all the same.
LOADERS = {"generator": load_generator, "classifier": load_classifier, "instruct": load_generator}


def load_deployment(deployment: Deployment) -> LoadedModel | LoadedClassifier:
    """Sessions for a deployment's files, refused unless their hashes match and a probe
    through them gives what the card promises."""
    try:
        card = ModelCard.read(deployment.model_dir)
        return LOADERS[task_kind(card.task).model](deployment, card)
    except RefusedModelError:
        raise
    except Exception as error:
        raise RefusedModelError(
            f"{deployment.agent_id} {deployment.version}: cannot load {deployment.model_dir}: "
            f"{error}"
        ) from error


def load_deployed(deployments_dir: Path, role: str = "champion") -> LoadedModel | LoadedClassifier:
    """The model the role's pointer names (champion by default)."""
    deployment = read_pointer(deployments_dir, role)
    if deployment is None:
        raise NoDeploymentError(
            f"no {role} deployment at {deployments_dir}: train the agent first "
            "(thunder train AGENT_ID)"
        )
    try:
        return load_deployment(deployment)
    except RefusedModelError as error:
        raise NoDeploymentError(str(error)) from error
