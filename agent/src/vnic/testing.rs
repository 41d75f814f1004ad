//! In-memory [`NetOps`] that applies actions to a [`Current`], for
//! handler tests and the reconcile loop's tests.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::{Action, Current, NetOps, VnicConfig, VnicError};

#[derive(Debug, Default)]
pub struct FakeNet {
    pub state: Mutex<Current>,
    /// Actions on these links fail.
    pub fail_links: BTreeSet<String>,
}

impl FakeNet {
    pub fn new(current: Current) -> Self {
        Self {
            state: Mutex::new(current),
            fail_links: BTreeSet::new(),
        }
    }
    pub fn snapshot(&self) -> Current {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn err(a: &Action, m: &str) -> VnicError {
    VnicError::Netlink {
        context: a.describe(),
        message: m.into(),
    }
}

impl NetOps for FakeNet {
    fn current(&self, cfg: &VnicConfig) -> Result<Current, VnicError> {
        let mut c = self.snapshot();
        c.routes.retain(|r| cfg.owns_table(r.table));
        Ok(c)
    }

    fn execute(&self, a: &Action) -> Result<(), VnicError> {
        if a.link().is_some_and(|l| self.fail_links.contains(l)) {
            return Err(err(a, "injected failure"));
        }
        let mut s = self.state.lock().map_err(|_| err(a, "poisoned"))?;
        let link = |s: &mut Current, name: &str| {
            s.links
                .iter_mut()
                .position(|l| l.name == name)
                .ok_or_else(|| err(a, "no such link"))
        };
        match a {
            Action::SetMtu { link: l, mtu } => {
                let i = link(&mut s, l)?;
                s.links[i].mtu = *mtu;
            }
            Action::SetUp { link: l } => {
                let i = link(&mut s, l)?;
                s.links[i].up = true;
            }
            Action::AddAddr { link: l, addr } => {
                let i = link(&mut s, l)?;
                if s.links[i].addrs.contains(addr) {
                    return Err(err(a, "File exists"));
                }
                s.links[i].addrs.push(*addr);
            }
            Action::DelAddr { link: l, addr } => {
                let i = link(&mut s, l)?;
                s.links[i].addrs.retain(|x| x != addr);
            }
            Action::AddRoute(r) => {
                if s.routes.contains(r) {
                    return Err(err(a, "File exists"));
                }
                s.routes.push(r.clone());
            }
            Action::DelRoute(r) => s.routes.retain(|x| x != r),
            Action::AddRule(r) => s.rules.push(r.clone()),
            Action::DelRule(r) => {
                if let Some(i) = s.rules.iter().position(|x| x == r) {
                    s.rules.remove(i);
                }
            }
        }
        Ok(())
    }
}
