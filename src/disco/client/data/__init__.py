"""Local data for a task: tabular CSV and image folders, as float32 arrays in the TF.js layout."""

from disco.client.data.dataset import DataError, Dataset
from disco.client.data.images import load_image_folder
from disco.client.data.loading import load_task_data
from disco.client.data.tabular import load_tabular

__all__ = ["DataError", "Dataset", "load_image_folder", "load_tabular", "load_task_data"]
