//! The jobs a front end submitted, and what the workers said of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// How many jobs a front end remembers; the oldest are forgotten first.
const REMEMBERED: usize = 10_000;

/// A job as `POST /jobs` and `GET /jobs/{id}` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id: the task's message id, from `Broker::submit`.
    pub id: String,
    /// The number whose primes below it are counted.
    pub below: u64,
    /// Whether a worker has counted them.
    pub status: JobStatus,
    /// The count, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Submitted; no worker has announced its count yet.
    Pending,
    /// Counted.
    Done,
}

/// What a worker announces when it has counted a job (the event `primes.counted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    /// The job's id.
    pub id: String,
    /// Its number.
    pub below: u64,
    /// The primes below it.
    pub count: u64,
}

/// The front end's jobs, shared by its workers (handlers take it as
/// `State<Arc<Jobs>>`): a lock held for a map operation, never across an `.await`.
#[derive(Debug, Default)]
pub struct Jobs(Mutex<Board>);

#[derive(Debug, Default)]
struct Board {
    jobs: HashMap<String, Job>,
    /// Ids, oldest first, to forget the oldest past `REMEMBERED`.
    order: VecDeque<String>,
}

impl Jobs {
    /// Records a job just submitted; a worker may have announced it already.
    pub fn submitted(&self, id: String, below: u64) -> Job {
        let mut board = self.lock();
        let pending = Job {
            id: id.clone(),
            below,
            status: JobStatus::Pending,
            count: None,
        };
        board.insert(id, pending).clone()
    }

    /// Records a worker's count (of a job of this front end's, or of another's).
    pub fn counted(&self, counted: Counted) {
        let done = Job {
            id: counted.id.clone(),
            below: counted.below,
            status: JobStatus::Done,
            count: Some(counted.count),
        };
        let mut board = self.lock();
        if let Some(job) = board.jobs.get_mut(&counted.id) {
            *job = done;
        } else {
            board.insert(counted.id, done);
        }
    }

    /// The job `id`, if this front end knows it.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().jobs.get(id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Board {
    /// Inserts `job` unless `id` is known (a count that came first wins); the job kept.
    fn insert(&mut self, id: String, job: Job) -> &Job {
        if !self.jobs.contains_key(&id) {
            if self.order.len() == REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.jobs.remove(&oldest);
            }
            self.order.push_back(id.clone());
        }
        self.jobs.entry(id).or_insert(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(id: &str, count: u64) -> Counted {
        Counted {
            id: id.into(),
            below: 100,
            count,
        }
    }

    #[test]
    fn a_count_completes_its_job_even_when_it_comes_first() {
        let jobs = Jobs::default();
        assert_eq!(jobs.submitted("a".into(), 100).status, JobStatus::Pending);
        jobs.counted(counted("a", 25));
        assert_eq!(jobs.get("a").unwrap().count, Some(25));
        jobs.counted(counted("b", 25));
        let b = jobs.submitted("b".into(), 100);
        assert_eq!((b.status, b.count), (JobStatus::Done, Some(25)));
    }

    #[test]
    fn the_oldest_are_forgotten() {
        let jobs = Jobs::default();
        for n in 0..=REMEMBERED {
            jobs.submitted(n.to_string(), 100);
        }
        assert_eq!(jobs.get("0"), None);
        assert!(jobs.get("1").is_some());
        assert_eq!(jobs.lock().jobs.len(), REMEMBERED);
    }
}
