"""nbgrader settings for learners' own Jupyter servers (the *Validate* button, ``nbgrader validate``).

Install it where every learner's nbgrader reads it: in the course environment,

    cp course/learner/nbgrader_config.py /opt/iwp/etc/jupyter/nbgrader_config.py

(``{sys.prefix}/etc/jupyter`` is on ``jupyter --paths``' config path for every server started from
that environment; ``/etc/jupyter`` works too). The *Validate* button reads nbgrader's config from
the Jupyter server's working directory and from ``jupyter --paths``, never from the notebook's
folder, so a file shipped inside the release would not be read.
"""

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

# Validate runs the whole notebook. nbgrader's default of 30 s per cell is too short for a
# Parsl run (worker start-up alone takes 3-20 s on a loaded shared server) or a worker sweep.
c.Execute.timeout = 900
