"""The Deployments pages in a real browser: headless Debian Chromium (Selenium, driver and browser given by path:
nothing is downloaded) against a real Airflow with the plugin. Logs in on Airflow's login page, triggers
dodas_submit from its form with the defaults (a real Spark cluster on the local cloud), watches it reach
CREATE_COMPLETE on the Deployments page, opens its page (also as the DAG's tab), scales the workers from it and
undeploys it. Then two Airflow users of the `user` role through the same routes over HTTP: neither sees the other's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from dodas_tasks.deploy.orchestrator_view import API_PREFIX
from dodas_tasks.devstack.local_airflow import AirflowStack
from dodas_tasks.naming import deployment_dag_id, short_id
from dodas_tasks.store import Store
from dodas_tasks.ui.in_airflow import UI_PREFIX

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
UI_DEADLINE_S = 60  # a page or element to show up
DEPLOY_DEADLINE_S = 900  # a Spark cluster created, scaled or deleted on a busy 2-core machine
VM = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
description: alice's VM
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(plugin_store_env: AirflowStack) -> AirflowStack:
    """The session's plugin stack (tests/_plugin_stack.py): users alice and bob besides the admin; its store is
    read by this test as its tasks read it."""
    return plugin_store_env


@pytest.fixture
def browser(chromium: WebDriver, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """The browser; when the test fails, what it showed last is in failure.png of the test's tmp dir."""
    failed_before = request.session.testsfailed
    yield chromium
    if request.session.testsfailed > failed_before:
        screenshot(chromium, tmp_path / "failure.png")


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    # The driver's path given: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and the browser it started


def password(stack: AirflowStack, user: str) -> str:
    return json.loads(stack.passwords_file.read_text())[user]


def wait(driver: WebDriver, timeout: float = UI_DEADLINE_S) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.5, ignored_exceptions=[StaleElementReferenceException])


def text_of(driver: WebDriver, css: str) -> str:
    try:
        return driver.find_element(By.CSS_SELECTOR, css).text
    except NoSuchElementException:
        return ""


def until_status(driver: WebDriver, css: str, wanted: str, failed: str) -> Callable[[WebDriver], bool]:
    """A wait condition on a status shown at `css` (the page refreshes it by itself); a failure ends the wait."""

    def reached(_: WebDriver) -> bool:
        shown = text_of(driver, css)
        if shown == failed:
            reason = text_of(driver, "#status-reason, .reason")
            raise AssertionError(f"the page shows {shown}: {reason}")
        return shown == wanted

    return reached


def new_row_id(driver: WebDriver, rows: str, earlier: set[str]) -> str | None:
    """The id of the first listed deployment that did not exist before, if one is listed yet."""
    try:
        ids = [row.get_attribute("data-id") for row in driver.find_elements(By.CSS_SELECTOR, rows)]
    except StaleElementReferenceException:  # the page refreshed its table meanwhile
        return None
    return next((i for i in ids if i and i not in earlier), None)


def log_in(driver: WebDriver, stack: AirflowStack, user: str) -> None:
    driver.get(f"{stack.ui_url()}/")
    name = wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "input[type=text], input[name=username]")))
    name.send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(password(stack, user))
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver).until(lambda d: "/auth/login" not in d.current_url)


def into_view(driver: WebDriver, title: str) -> None:
    """Into the frame in which Airflow's UI shows a plugin's external view."""
    driver.switch_to.default_content()
    frame = wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, f"iframe[title='{title}']")))
    driver.switch_to.frame(frame)


def screenshot(driver: WebDriver, path: Path) -> None:
    driver.switch_to.default_content()
    assert driver.save_screenshot(str(path)), path


def test_submit_watch_scale_and_undeploy_from_the_deployments_page(
    stack: AirflowStack, browser: WebDriver, tmp_path: Path
) -> None:
    driver = browser
    with Store() as store:  # the stack is shared: other tests' deployments are listed too
        earlier = {d.id for d in store.list_deployments()}
    log_in(driver, stack, "admin")

    # dodas_submit's trigger form, submitted with its defaults (templates/spark_local.yaml on the local cloud)
    driver.get(f"{stack.ui_url()}/dags/dodas_submit")
    wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-button]"))).click()
    dialog = (By.CSS_SELECTOR, "[data-scope=dialog][data-part=content]")
    wait(driver).until(EC.text_to_be_present_in_element(dialog, "spark_local.yaml"))  # the form has its defaults
    wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]"))).click()
    wait(driver).until(
        EC.invisibility_of_element_located((By.CSS_SELECTOR, "[data-scope=dialog][data-part=positioner]"))
    )

    # the Deployments entry of Airflow's navigation
    wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "a[href$='/plugin/deployments']"))).click()
    into_view(driver, "Deployments")
    rows = "table.deployments tbody tr"
    deployment_id = wait(driver).until(lambda d: new_row_id(d, rows, earlier))
    assert re.fullmatch(r"[0-9a-f-]{36}", deployment_id)
    row = f"{rows}[data-id='{deployment_id}']"
    first_row = text_of(driver, row)
    assert short_id(deployment_id) in first_row and "Spark standalone cluster" in first_row
    assert "admin (Airflow user)" in first_row and "local" in first_row
    wait(driver, DEPLOY_DEADLINE_S).until(until_status(driver, f"{row} .status", "CREATE_COMPLETE", "CREATE_FAILED"))
    assert "spark-worker-server 2" in text_of(driver, row)
    Select(driver.find_element(By.ID, "status-filter")).select_by_value("CREATE_COMPLETE")  # filters by status
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "deployment-count"), "in CREATE_COMPLETE"))
    assert deployment_id in driver.find_element(By.CSS_SELECTOR, row).get_attribute("data-id")
    screenshot(driver, tmp_path / "deployments-list.png")

    # the deployment's page: nodes, outputs (URLs clickable), events, inputs, template
    into_view(driver, "Deployments")
    driver.find_element(By.CSS_SELECTOR, f"{row} a.deployment-link").click()
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "deployment-id"), deployment_id))
    assert text_of(driver, "#status") == "CREATE_COMPLETE"
    nodes = driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
    assert [n.get_attribute("data-group") for n in nodes].count("spark-worker-server") == 2 and len(nodes) == 3
    assert all("STARTED" in n.text or "CONFIGURED" in n.text for n in nodes), [n.text for n in nodes]
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#outputs a")]
    assert any(re.fullmatch(r"http://127\.77\.\d+\.\d+:8080/?", href) for href in links), links
    assert "spark://" in text_of(driver, "#outputs")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#events li")) >= 5
    assert "number_of_workers" in text_of(driver, "#inputs")
    assert driver.find_element(By.CSS_SELECTOR, "#template pre").get_attribute("textContent").startswith("tosca_")
    screenshot(driver, tmp_path / "deployment-page.png")

    # the same page as a tab of the deployment's DAG
    driver.get(f"{stack.ui_url()}/dags/{deployment_dag_id(deployment_id)}/plugin/deployment")
    into_view(driver, "Deployment")
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "deployment-id"), deployment_id))
    screenshot(driver, tmp_path / "dag-tab.png")
    into_view(driver, "Deployment")

    # scale the workers from the page: one more
    group = Select(driver.find_element(By.ID, "scale-group"))
    assert group.first_selected_option.get_attribute("value") == "spark-worker-server"  # the most VMs
    group.select_by_value("spark-master-server")
    group.select_by_value("spark-worker-server")
    count = driver.find_element(By.ID, "scale-count")
    assert count.get_attribute("value") == "2"
    count.clear()
    count.send_keys("3")
    driver.find_element(By.ID, "scale-button").click()
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "action-result"), "Scaling requested"))
    wait(driver, DEPLOY_DEADLINE_S).until(until_status(driver, "#status", "UPDATE_COMPLETE", "UPDATE_FAILED"))
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "node-count"), "4"))
    workers = driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr[data-group='spark-worker-server']")
    assert len(workers) == 3

    # undeploy from the page (after its confirmation)
    driver.find_element(By.ID, "undeploy-button").click()
    wait(driver).until(EC.element_to_be_clickable((By.ID, "undeploy-yes"))).click()
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "action-result"), "Undeploy requested"))
    wait(driver, DEPLOY_DEADLINE_S).until(until_status(driver, "#status", "DELETE_COMPLETE", "DELETE_FAILED"))
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "node-count"), "0"))


def airflow_token(stack: AirflowStack, user: str) -> str:
    answer = httpx.post(
        f"{stack.ui_url()}/auth/token", json={"username": user, "password": password(stack, user)}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def page_user(stack: AirflowStack, user: str | None) -> httpx.Client:
    """A browser-like client of the pages: Airflow's `_token` cookie, as the UI holds it after a login."""
    cookies = {"_token": airflow_token(stack, user)} if user else {}
    return httpx.Client(base_url=f"{stack.ui_url()}{UI_PREFIX}", cookies=cookies, timeout=60)


def test_an_airflow_user_cannot_see_or_act_on_another_users_deployment(stack: AirflowStack) -> None:
    token = airflow_token(stack, "alice")
    submitted = httpx.post(
        f"{stack.ui_url()}{API_PREFIX}/deployments",
        json={"template": VM},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert submitted.status_code == 201, submitted.text
    deployment_id = submitted.json()["uuid"]
    alice, bob, admin, nobody = (page_user(stack, u) for u in ("alice", "bob", "admin", None))
    page = f"/deployments/{deployment_id}"
    action = {"X-DODAS-UI": "1"}

    assert deployment_id in alice.get("/deployments").text and "alice (Airflow user)" in alice.get(page).text
    assert deployment_id in admin.get("/deployments").text and admin.get(page).status_code == 200  # Admin role
    assert deployment_id not in bob.get("/deployments").text
    refusals: list[Any] = [
        bob.get(page),
        bob.post(f"{page}/scale", json={"group": "vm", "count": 3}, headers=action),
        bob.post(f"{page}/undeploy", headers=action),
    ]
    for answer in refusals:
        assert answer.status_code == 403 and "not yours" in answer.text, answer.text
    assert bob.get(f"/deployments/{deployment_id[:8]}").status_code == 404
    assert bob.get(f"/dags/{deployment_dag_id(deployment_id)}").status_code == 404
    assert nobody.get("/deployments").status_code == 401

    gone = alice.post(f"{page}/undeploy", headers=action)
    assert gone.status_code == 202, gone.text
    deadline = time.monotonic() + DEPLOY_DEADLINE_S
    while "DELETE_COMPLETE" not in alice.get(page, params={"part": "live"}).text:
        assert time.monotonic() < deadline, "alice's deployment not deleted in time"
        time.sleep(0.5)
