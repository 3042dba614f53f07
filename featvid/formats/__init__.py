"""The folder formats that cross stages: the run folder (trainer -> baker) and the baked folder
(baker -> encoder). Both trainer and baker read them here, so the packages that read a folder never
import the package that writes it."""
