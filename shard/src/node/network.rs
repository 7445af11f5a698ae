//! openraft's network over the node's wire: its QUIC endpoint, or the simulator's network.

use std::net::SocketAddr;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;

use super::rpc::{decode, encode, RaftRpc, Request, Response};
use crate::net::{NetError, Wire};
use crate::raft::{NodeId, TypeConfig};

/// Makes connections to the replicas of one chain.
#[derive(Clone)]
pub struct Network {
    endpoint: Wire,
    chain: u32,
    /// The leader's heartbeat interval, which paces the back-off.
    heartbeat: Duration,
}

impl Network {
    /// Raft traffic of `chain` over `endpoint`, whose leader sends heartbeats `heartbeat` apart.
    pub fn new(endpoint: Wire, chain: u32, heartbeat: Duration) -> Self {
        Self { endpoint, chain, heartbeat }
    }
}

/// A connection to one replica (the endpoint shares one QUIC connection per peer).
pub struct Peer {
    endpoint: Wire,
    chain: u32,
    heartbeat: Duration,
    target: NodeId,
    addr: Result<SocketAddr, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            endpoint: self.endpoint.clone(),
            chain: self.chain,
            heartbeat: self.heartbeat,
            target,
            addr: node.addr.parse().map_err(|e| format!("bad address {:?} of node {target}: {e}", node.addr)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Peer {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, BasicNode, E>> {
        let addr = self.addr.clone().map_err(|m| RPCError::Unreachable(Unreachable::new(&Msg(m))))?;
        let req = encode(&Request::Raft { chain: self.chain, rpc });
        let bytes = self.endpoint.call(self.target, addr, req, option.hard_ttl()).await.map_err(|e: NetError| {
            if e.is_retryable() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        decode(&bytes).map_err(|m| RPCError::Network(NetworkError::new(&Msg(m))))
    }

    fn unexpected<E: std::error::Error>(r: Response) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&Msg(format!("unexpected answer: {r:?}"))))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    /// After a call that got no answer (in time), openraft sends this peer nothing for a pause
    /// taken from here, until a call succeeds again: a fifth of a heartbeat at first, doubling to
    /// two heartbeats. A follower that was only slow to fsync under load is tried again almost at
    /// once (openraft's own half second stalled replication to it 60–80 times a minute), while
    /// one that stays silent, or a machine so loaded that every answer is late, is not sent
    /// megabytes of retries back to back. Two heartbeats stay below the election timeout (more
    /// than two heartbeats by the config's rules), so a pause alone never starts an election.
    fn backoff(&self) -> Backoff {
        let (first, most) = (self.heartbeat / 5, self.heartbeat * 2);
        Backoff::new(std::iter::successors(Some(first), move |d| Some((*d * 2).min(most))))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRpc::Append(rpc), &option).await? {
            Response::Append(Ok(r)) => Ok(r),
            Response::Append(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(RaftRpc::Snapshot(rpc), &option).await? {
            Response::Snapshot(Ok(r)) => Ok(r),
            Response::Snapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRpc::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::{BasicNode, Vote};

    use super::Network;
    use crate::net::{FnHandler, PeerIdentity, SimNet, Wire};

    fn attach(net: &SimNet, id: u64) -> Wire {
        let identity = PeerIdentity { node_id: Some(id), role: Some("replica".into()), ..PeerIdentity::default() };
        let handler = FnHandler(|_: PeerIdentity, _: Bytes| async { Ok(Bytes::new()) });
        Wire::Sim(net.attach(id, identity, Arc::new(handler)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_left_alone_briefly_at_first_and_never_for_an_election_timeout() {
        let net = SimNet::new(1, Duration::from_millis(1), Duration::ZERO);
        let heartbeat = Duration::from_millis(100);
        let mut network = Network::new(attach(&net, 1), 7, heartbeat);
        attach(&net, 2);
        let mut peer = network.new_client(2, &BasicNode::new("127.0.0.1:1")).await;

        net.isolate(2, true);
        let vote = openraft::raft::VoteRequest::new(Vote::new(1, 1), None);
        let late = peer.vote(vote, RPCOption::new(heartbeat)).await;
        assert!(matches!(late, Err(RPCError::Unreachable(_))), "{late:?}");

        let pauses: Vec<u64> = peer.backoff().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 200, 200, 200]);
    }
}
