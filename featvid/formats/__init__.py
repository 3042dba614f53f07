"""The folder formats that cross stages: the run folder (trainer -> baker) and the baked folder
(baker -> encoder). Both trainer and baker read them here, so the packages that read a folder never
import the package that writes it. `folder.FolderFormat` is the pattern every folder reader shares
(the stream reader in featvid.codecs too): format and version, the common fields, file records
required (unless a legacy read), files read checked, verify, summary."""
