"""Energy an operator can account for: carbon intensities per host (carbon.py) and the
report per VM and host over a period (report.py).

Plain Python, standard library only: the report runs where neither pyinfra nor the
deploy's dependencies are installed. The attribution itself is recorded by Prometheus
(files/prometheus/scaphandre_rules.yml).
"""
